"""Generation: determinism, exact top-k/top-p sets, KV cache == recompute, padded ids never sampled,
length capped by positions, EOD stops, and the file-level entry (real tokenizer, real export)."""

from __future__ import annotations

import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gpt2core.errors import WikiGPTError
from gpt2core.export.hf import export_hf
from gpt2core.generate import Sampling, filter_top_k, filter_top_p, generate_ids, next_tokens, write_samples
from gpt2core.model import GPT, GPTConfig

VOCAB, EOD = 200, 199


def tiny(seed: int = 0, n_positions: int = 48) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.padded(VOCAB, 128, n_positions=n_positions, n_layer=2, n_head=2, n_embd=32)).eval()


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


def test_top_k_keeps_exactly_the_k_largest() -> None:
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0, 2.5, 0.0])
    assert kept(filter_top_k(logits, 3)) == {1, 3, 4}
    assert kept(filter_top_k(logits, 1)) == {1}
    assert kept(filter_top_k(logits, 0)) == set(range(6))


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.15])  # sorted: 1 (.4), 3 (.3), 4 (.15), 2 (.1), 0 (.05)
    logits = probs.log()
    assert kept(filter_top_p(logits, 0.4)) == {1}
    assert kept(filter_top_p(logits, 0.41)) == {1, 3}
    assert kept(filter_top_p(logits, 0.8)) == {1, 3, 4}
    assert kept(filter_top_p(logits, 0.86)) == {1, 3, 4, 2}
    assert kept(filter_top_p(logits, 0.01)) == {1}
    assert kept(filter_top_p(logits, 1.0)) == set(range(5))


def test_sampling_frequencies_follow_the_filtered_distribution() -> None:
    logits = torch.tensor([[0.05, 0.4, 0.1, 0.3, 0.15]]).log().repeat(20000, 1)
    s = Sampling(temperature=1.0, top_k=0, top_p=0.8)
    ids = next_tokens(logits, s, torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=5).float() / len(ids)
    torch.testing.assert_close(counts, torch.tensor([0, 0.4, 0, 0.3, 0.15]) / 0.85, atol=0.015, rtol=0)


def test_same_seed_same_text_other_seed_other_text() -> None:
    model = tiny()
    prompts = [[1, 2, 3], [5, 6, 7, 8, 9]]
    s = Sampling(max_new_tokens=20, temperature=1.0, top_p=1.0)
    run = [generate_ids(model, prompts, s, EOD, torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert run[0] == run[1]
    assert run[0] != run[2]


def test_kv_cache_equals_full_recompute() -> None:
    model = tiny(seed=4)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10], [11, 12, 13, 14]]
    s = Sampling(max_new_tokens=30, greedy=True)
    cached = generate_ids(model, prompts, s, EOD, torch.Generator(), use_cache=True)
    full = generate_ids(model, prompts, s, EOD, torch.Generator(), use_cache=False)
    assert cached == full
    assert all(len(new) > 0 for new, _ in cached)


def test_batched_equals_one_at_a_time_greedy() -> None:
    model = tiny(seed=5)
    prompts = [[3, 4, 5, 6, 7, 8], [9, 10]]
    s = Sampling(max_new_tokens=12, greedy=True)
    batched = generate_ids(model, prompts, s, EOD, torch.Generator())
    single = [generate_ids(model, [p], s, EOD, torch.Generator())[0] for p in prompts]
    assert batched == single


def test_padded_ids_are_never_produced() -> None:
    model = tiny(seed=6)
    with torch.no_grad():  # make padded rows dominate every logit if they were not masked
        model.wte.weight[VOCAB:] = 50.0
    out = generate_ids(model, [[1, 2]] * 4, Sampling(max_new_tokens=40, temperature=5.0, top_p=1.0), EOD,
                       torch.Generator().manual_seed(0))
    ids = [t for new, _ in out for t in new]
    assert ids and max(ids) < VOCAB


def test_length_is_capped_by_positions_left_and_eod_stops() -> None:
    model = tiny(n_positions=16)
    out = generate_ids(model, [list(range(1, 11))], Sampling(max_new_tokens=100, greedy=True), EOD,
                       torch.Generator())
    new, why = out[0]
    assert (len(new), why) == (6, "length") or (why == "eod" and len(new) < 6)
    with torch.no_grad():  # final hidden state constant e, and EOD's row along e: EOD is the argmax
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)
        model.wte.weight[EOD] = 10.0
    new, why = generate_ids(model, [[1, 2, 3]], Sampling(max_new_tokens=10, greedy=True), EOD,
                            torch.Generator())[0]
    assert (new, why) == ([], "eod")


def test_prompt_too_long_is_a_clear_error() -> None:
    with pytest.raises(WikiGPTError, match="prompt 1: 16 tokens"):
        generate_ids(tiny(n_positions=16), [[1], list(range(16))], Sampling(), EOD, torch.Generator())


def make_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["The history of mathematics is long. In mathematics, a ring is a set."] * 50, trainer)
    tok.add_special_tokens(["<|endoftext|>"])
    tok.save(str(path))
    return path


def test_write_samples_from_an_export(tmp_path: Path) -> None:
    tok = make_tokenizer(tmp_path / "tokenizer.json")
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tok)).get_vocab_size()
    torch.manual_seed(0)
    export_hf(GPT(GPTConfig.padded(vocab, 128, n_positions=64, n_layer=1, n_head=2, n_embd=16)),
              tmp_path / "model", tok)
    settings = {"max_new_tokens": 8, "temperature": 0.9, "top_k": 0, "top_p": 0.9, "greedy": False,
                "seed": 7, "batch_size": 2}
    (tmp_path / "prompts.txt").write_text("A ring\n\nThe set\n", encoding="utf-8")
    out = tmp_path / "samples.jsonl"
    write_samples(tmp_path / "model", out, ["The history of", "In mathematics,"], tmp_path / "prompts.txt", settings)
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [x["prompt"] for x in lines] == ["The history of", "In mathematics,", "A ring", "The set"]
    assert all(x["stop"] in ("eod", "length") and x["new_tokens"] <= 8 for x in lines)
    first = out.read_bytes()
    write_samples(tmp_path / "model", out, ["The history of", "In mathematics,"], tmp_path / "prompts.txt", settings)
    assert out.read_bytes() == first


# ---- the command line: --help, the no-prompt error, the interactive mode on a real terminal (a pty) -----
def export_model(tmp_path: Path) -> Path:
    from tokenizers import Tokenizer

    tok = make_tokenizer(tmp_path / "tokenizer.json")
    torch.manual_seed(0)
    vocab = Tokenizer.from_file(str(tok)).get_vocab_size()
    export_hf(GPT(GPTConfig.padded(vocab, 128, n_positions=64, n_layer=1, n_head=2, n_embd=16)),
              tmp_path / "model", tok)
    return tmp_path / "model"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpt2core.generate", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_help_has_a_line_for_every_option_and_ends_its_sentences() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0
    usage, options = proc.stdout.split("\noptions:\n")
    described = {m.group(1): m.group(2) for m in re.finditer(r"^  (--[\w-]+)(?: [A-Z]+)?(?: +(\S.*))?$", options, re.M)}
    for option in set(re.findall(r"\[(--[\w-]+)", usage)):
        assert option in described, option
        assert described[option] or option in ("--model-dir",), option  # long names put their help below
    assert "--prompt TEXT         a prompt to continue" in options
    description = usage.split("\n\n", 1)[1]
    assert description.rstrip().endswith("."), description


def test_no_prompt_names_the_option_to_give(tmp_path: Path) -> None:
    proc = _cli("--model-dir", str(tmp_path / "absent"))
    assert proc.returncode == 1
    assert proc.stderr == ("error: no prompt: give --prompt TEXT (repeatable), --prompts-file FILE, or --interactive "
                           "on a terminal\n")


def _read_until(fd: int, marker: bytes, timeout: float = 60.0) -> bytes:
    out, deadline = b"", time.monotonic() + timeout
    while marker not in out:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {marker!r} within {timeout} s; got {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    return out


# the system calls input() waits for a key in (read; select, poll, pselect6, ppoll with readline), for where
# /proc shows no wchan
_WAITING_SYSCALLS = {"x86_64": {"0", "7", "23", "270", "271"}, "aarch64": {"63", "72", "73"}}


def _waiting_for_a_key(pid: int) -> bool:
    """Is `pid`'s main thread blocked reading the terminal (a tty read, or readline's select())? Not merely
    sleeping: a thread waiting for the GIL or a lock sleeps too, and a Ctrl-C sent then is lost until the
    next key."""
    wchan = Path(f"/proc/{pid}/wchan").read_text().strip()
    if wchan and wchan != "0":
        return any(where in wchan for where in ("wait_woken", "tty", "poll", "select"))
    syscall = Path(f"/proc/{pid}/syscall").read_text().split()[0]
    return syscall in _WAITING_SYSCALLS.get(platform.machine(), set())


def _wait_until_blocked(pid: int, timeout: float = 30.0) -> None:
    """Wait until `pid` waits for a key. A Ctrl-C sent in the microseconds between input() writing its
    prompt and entering its read (or readline's select()) is only seen at the next key: CPython checks
    signals when that call is interrupted, not before it starts. No person types that fast; a test under load can.
    A sleeping process is not enough: a thread waiting for the GIL or a lock sleeps too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _waiting_for_a_key(pid):
            time.sleep(0.05)  # and still there: not a passing read or select() on the way to input()'s
            if _waiting_for_a_key(pid):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} never waited for a key within {timeout} s")


@pytest.mark.parametrize(("key", "name"), [(b"\x04", "Ctrl-D"), (b"\x03", "Ctrl-C"), (b"\r", "empty line")])
def test_interactive_mode_says_how_to_quit_and_ends_cleanly(tmp_path: Path, key: bytes, name: str) -> None:
    import pty

    model = export_model(tmp_path)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a real terminal on stdin/stdout/stderr, Ctrl-C sends it SIGINT
        # as a shell starts a program in the foreground: SIGINT's default action, even when this test runs in
        # a background job of a non-interactive shell (which ignores SIGINT, and exec keeps that)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "gpt2core.generate", "--model-dir", str(model),
                                  "--max-new-tokens", "4"])
    try:
        first = _read_until(fd, b"prompt> ")
        assert b"an empty line, Ctrl-D or Ctrl-C quits." in first
        os.write(fd, b"The history of\r")
        answer = _read_until(fd, b"prompt> ")
        assert b"The history of" in answer.split(b"\n", 1)[1], answer
        _wait_until_blocked(pid)  # as a person types: after the prompt, not between its write and the read
        os.write(fd, key)
        rest = _read_until(fd, b"\x00", timeout=30)  # everything until the terminal closes
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, (name, rest)
    assert b"Traceback" not in rest and b"KeyboardInterrupt" not in rest, rest
    if name != "empty line":
        assert rest.endswith(b"\r\n") and b"prompt> " not in rest.split(b"\n")[-1], (name, rest)
