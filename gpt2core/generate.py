"""Text generation from the exported model (results/model/, read through gpt2core.export.hf.load_hf like
evaluation, so the padded vocabulary comes from the export): KV cache, temperature, top-k, then top-p
(the reference's order), greedy, a seed, stop at EOD, prompts of different lengths batched together,
and an interactive mode on a terminal.

`python -m gpt2core.generate --model-dir results/model --prompt "The history of"` (see --help).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from gpt2core.errors import WikiGPTError, run_cli
from gpt2core.export.hf import TOKENIZER_NAME, eod_id_from_tokenizer, load_hf
from gpt2core.fsutil import atomic_path
from gpt2core.model import GPT, KVCache


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.9
    top_k: int = 0
    top_p: float = 0.9
    greedy: bool = False
    seed: int = 1234
    batch_size: int = 8


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties at the k-th value kept), the rest -inf; k=0 keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of most likely tokens whose probability reaches p (at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits.float(), dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass ranked above each token
    drop_sorted = before >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(logits: torch.Tensor, s: Sampling, generator: torch.Generator) -> torch.Tensor:
    """(B, V) logits -> (B,) ids: argmax when greedy (or temperature 0), else filtered sampling."""
    if s.greedy or s.temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_top_p(filter_top_k(logits.float() / s.temperature, s.top_k), s.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate_ids(model: GPT, prompts: list[list[int]], s: Sampling, eod_id: int, generator: torch.Generator,
                 use_cache: bool = True) -> list[tuple[list[int], str]]:
    """Continue each prompt; returns (new ids without the EOD, 'eod' | 'length') per prompt.

    Rows advance together from the shortest prompt's end; a row still inside its prompt takes its prompt
    token instead of the sample, so different lengths batch without attention masks.
    """
    model.eval()
    device = model.wte.weight.device
    n_pos = model.config.n_positions
    lens = [len(p) for p in prompts]
    for i, n in enumerate(lens):
        if n == 0 or n >= n_pos:
            raise WikiGPTError(f"prompt {i}: {n} tokens; needs 1 to {n_pos - 1} (the model's positions)")
    ends = [min(n + s.max_new_tokens, n_pos) for n in lens]  # max_new_tokens capped by positions left
    B, T = len(prompts), max(ends)
    tokens = torch.full((B, T), eod_id, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        tokens[i, : len(p)] = torch.tensor(p, dtype=torch.long)
    lens_t = torch.tensor(lens, device=device)
    ends_t = torch.tensor(ends, device=device)
    stop = torch.full((B,), T, dtype=torch.long, device=device)  # first generated EOD position
    done = torch.zeros(B, dtype=torch.bool, device=device)
    cache = KVCache() if use_cache else None
    prev = 0
    for cur in range(min(lens), T):
        if cache is not None:
            logits = model(tokens[:, prev:cur], cache, start_pos=prev)[:, -1]
        else:
            logits = model(tokens[:, :cur])[:, -1]
        sampled = next_tokens(logits, s, generator)
        in_prompt = cur < lens_t
        active = ~done & (cur < ends_t)
        new = torch.where(in_prompt, tokens[:, cur], sampled)
        tokens[:, cur] = torch.where(active, new, tokens[:, cur])
        hit_eod = active & ~in_prompt & (sampled == eod_id)
        stop = torch.where(hit_eod, torch.full_like(stop, cur), stop)
        done |= hit_eod | (cur + 1 >= ends_t)
        prev = cur
        if bool(done.all()):
            break
    out = []
    for i in range(B):
        end = min(int(stop[i]), ends[i])
        out.append((tokens[i, lens[i]:end].tolist(), "eod" if int(stop[i]) < ends[i] else "length"))
    return out


class Generator:
    """A loaded model and tokenizer, ready to complete text prompts."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.model = load_hf(model_dir, device=device)
        tok_path = model_dir / TOKENIZER_NAME
        if not tok_path.is_file():
            raise WikiGPTError(f"{tok_path}: missing (the model directory has no tokenizer)")
        try:
            self.tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as exc:  # tokenizers raises a bare Exception for any unreadable file
            raise WikiGPTError(f"{tok_path}: unreadable tokenizer ({' '.join(str(exc).split())})") from None
        eod = eod_id_from_tokenizer(tok_path)
        if eod is None:
            raise WikiGPTError(f"{tok_path}: has no <|endoftext|> token")
        self.eod_id = eod

    def complete(self, prompts: list[str], s: Sampling) -> list[dict]:
        generator = torch.Generator(device="cpu").manual_seed(s.seed)
        results = []
        for start in range(0, len(prompts), s.batch_size):
            batch = prompts[start:start + s.batch_size]
            ids = [self.tokenizer.encode(p).ids or [self.eod_id] for p in batch]
            for prompt, (new, why) in zip(batch, generate_ids(self.model, ids, s, self.eod_id, generator),
                                          strict=True):
                results.append({"prompt": prompt, "completion": self.tokenizer.decode(new),
                                "new_tokens": len(new), "stop": why})
        return results


def read_prompts(prompts: list[str], prompts_file: str | Path | None,
                 names: tuple[str, str] = ("generate.prompts", "generate.prompts_file")) -> list[str]:
    """Prompts from the config list plus a text file (one prompt a line, blank lines skipped). `names` are
    what the caller calls the two (config keys for the workflow, options for the command line)."""
    out = list(prompts)
    if prompts_file:
        path = Path(prompts_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WikiGPTError(f"{path}: cannot read prompts ({exc})") from None
        out += [line for line in text.splitlines() if line.strip()]
    if not out:
        where = f"{prompts_file} holds only blank lines" if prompts_file else f"no {names[1]} given"
        raise WikiGPTError(f"no prompts: {names[0]} is empty and {where}")
    return out


def write_samples(model_dir: str | Path, out_path: str | Path, prompts: list[str],
                  prompts_file: str | Path | None, settings: dict) -> None:
    """rule generate: complete every prompt, write one JSON line each (atomically)."""
    s = Sampling(**{k: v for k, v in settings.items() if k in Sampling.__dataclass_fields__})
    results = Generator(model_dir).complete(read_prompts(prompts, prompts_file), s)
    with atomic_path(out_path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for r in results:
                fh.write(json.dumps({**r, "sampling": asdict(s)}, ensure_ascii=False) + "\n")


QUIT_HINT = "Type a prompt and press Enter; an empty line, Ctrl-D or Ctrl-C quits."


def interactive(gen: Generator, s: Sampling, read: Callable[[str], str] = input) -> None:
    """Read prompts from a terminal until an empty line, Ctrl-D or Ctrl-C, and end on a fresh line."""
    print(QUIT_HINT, file=sys.stderr, flush=True)
    try:
        while prompt := read("prompt> ").strip():
            print(prompt + gen.complete([prompt], s)[0]["completion"], flush=True)
    except EOFError:  # Ctrl-D leaves the cursor after the prompt
        print(file=sys.stderr)
    except KeyboardInterrupt:  # Ctrl-C, at the prompt or while generating
        print(file=sys.stderr)


OPTION_HELP = {
    "max_new_tokens": "tokens to generate at most for each prompt (fewer if the model's positions run out)",
    "temperature": "divides the logits before sampling; 0 is greedy",
    "top_k": "sample only among the k most likely tokens (0: no limit)",
    "top_p": "then only among the most likely tokens whose probabilities add up to p (1: no limit)",
    "greedy": "always take the most likely token (no sampling)",
    "seed": "random seed: the same seed, prompts and settings give the same text",
    "batch_size": "prompts generated together",
}
DESCRIPTION = """\
Continue text prompts with a model the workflow exported (results/model/, the Hugging Face GPT-2 layout).
Prompts come from --prompt (repeatable) and --prompts-file; with neither, on a terminal, it asks for
prompts one at a time (--interactive always does)."""
EPILOG = """\
example:
  python -m gpt2core.generate --model-dir results/model --prompt "The history of"
"""
NO_PROMPT = "no prompt: give --prompt TEXT (repeatable), --prompts-file FILE, or --interactive on a terminal"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gpt2core.generate", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", default="results/model", metavar="DIR",
                   help="the exported model to load (default: %(default)s)")
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                   help="a prompt to continue; give it again for more prompts")
    p.add_argument("--prompts-file", metavar="FILE", help="a text file of prompts, one a line (blank lines skipped)")
    p.add_argument("--out", metavar="FILE", help="write JSON lines here instead of printing the completions")
    p.add_argument("--interactive", action="store_true", help="ask for prompts on the terminal, one at a time")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    for name, field in Sampling.__dataclass_fields__.items():
        kind = field.type if isinstance(field.type, type) else {"int": int, "float": float, "bool": bool}[field.type]
        if kind is bool:
            p.add_argument(f"--{name.replace('_', '-')}", action="store_true", help=OPTION_HELP[name])
        else:
            p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=field.default, metavar=kind.__name__.upper(),
                           help=f"{OPTION_HELP[name]} (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    s = Sampling(**{k: getattr(args, k) for k in Sampling.__dataclass_fields__})

    def run() -> None:
        ask = args.interactive or (not args.prompt and not args.prompts_file and sys.stdin.isatty())
        if not ask and not args.prompt and not args.prompts_file:
            raise WikiGPTError(NO_PROMPT)
        prompts = None if ask else read_prompts(args.prompt, args.prompts_file, ("--prompt", "--prompts-file"))
        gen = Generator(args.model_dir, args.device)
        if prompts is None:
            interactive(gen, s)
            return
        results = gen.complete(prompts, s)
        if args.out:
            with atomic_path(args.out) as tmp:
                tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results), encoding="utf-8")
        else:
            for r in results:
                print(r["prompt"] + r["completion"])

    run_cli(run)


if __name__ == "__main__":
    main()
