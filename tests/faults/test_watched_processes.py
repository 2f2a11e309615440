"""Every external process has a deadline and a watchdog (gpt2core.watch), and WikiExtractor's failures are
one line naming their cause: a full disk (its writer dies and it would wait forever), invalid UTF-8."""

from __future__ import annotations

import bz2
import os
import random
import sys
import time
from pathlib import Path

import disklib
import pytest

from gpt2core.data.extract import extract_dump
from gpt2core.errors import WikiGPTError
from gpt2core.watch import Limits, run_watched

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"

small_disk = disklib.small_disk  # the fixture (a 256 KiB tmpfs)


def page(i: int, text: str) -> str:
    return (f"  <page>\n    <title>Page {i}</title>\n    <ns>0</ns>\n    <id>{i}</id>\n    <revision>\n"
            f"      <id>{i + 1}</id>\n      <text xml:space=\"preserve\">{text}</text>\n    </revision>\n  </page>\n")


def write_dump(path: Path, pages: list[str]) -> Path:
    """The sample dump with `pages` added."""
    xml = bz2.decompress((SAMPLE / "samplewiki-pages-articles.xml.bz2").read_bytes()).decode()
    xml = xml.replace("</mediawiki>", "".join(pages) + "</mediawiki>")
    path.write_bytes(bz2.compress(xml.encode("utf-8", "surrogateescape")))
    return path


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_silent_process_is_stopped_by_the_stall_watchdog_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = ("import subprocess, sys, time; "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              f"open({str(pidfile)!r}, 'w').write(str(c.pid)); print('started', flush=True); time.sleep(120)")
    started = time.monotonic()
    ran = run_watched([sys.executable, "-c", script], tmp_path / "log", 60, Limits(stall_s=2, poll_s=0.2))
    assert ran.stopped and "no new output" in ran.stopped and time.monotonic() - started < 30
    assert "started" in (tmp_path / "log").read_text()  # streamed to the log
    child = int(pidfile.read_text())
    for _ in range(50):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def test_a_busy_process_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    script = "import time\nwhile True:\n    print('tick', flush=True); time.sleep(0.05)"
    started = time.monotonic()
    ran = run_watched([sys.executable, "-c", script], None, 1.5, Limits(stall_s=60, poll_s=0.2))
    assert ran.stopped and "deadline" in ran.stopped and time.monotonic() - started < 20
    assert list(ran.tail)[-1] == "tick"  # a bounded tail, not the whole output


def test_the_deadline_grows_with_the_input() -> None:
    limits = Limits(floor_s=100, s_per_mb=2)
    assert limits.deadline_s(0) == 100 and limits.deadline_s(50_000_000) == 200


def test_invalid_utf8_in_a_dump_names_its_cause_not_the_traceback(tmp_path: Path) -> None:
    dump = write_dump(tmp_path / "bad.xml.bz2", [page(1, "Hello \udcff world. " + "word " * 50)])
    with pytest.raises(WikiGPTError) as info:
        extract_dump(dump, tmp_path / "out", log=tmp_path / "log")
    message = str(info.value)
    assert str(dump) in message and "UnicodeDecodeError" in message and "invalid start byte" in message
    assert "Traceback" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("processes", [1, 2])
def test_wikiextractor_on_a_full_disk_is_one_line_not_a_hang(tmp_path: Path, small_disk: Path,
                                                              processes: int) -> None:
    rng = random.Random(processes)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    pages = [page(1000 + i, " ".join(f"The {rng.choice(words)} {rng.choice(words)} went to {rng.choice(words)}."
                                     for _ in range(150))) for i in range(300)]
    dump = write_dump(tmp_path / "big.xml.bz2", pages)
    out = small_disk / "extract" / "big"
    started = time.monotonic()
    with pytest.raises(WikiGPTError) as info:
        extract_dump(dump, out, processes, tmp_path / "log", Limits(floor_s=120, stall_s=30, poll_s=0.5))
    assert time.monotonic() - started < 100
    assert str(info.value).startswith(f"{out}: no space left on device")
    assert not out.exists() and os.listdir(out.parent) == []


def test_every_process_the_code_starts_has_a_deadline() -> None:
    """Static: each subprocess call in gpt2core, the stage scripts and the benchmarks passes `timeout=`;
    the one Popen without it is run_watched's own (deadline and watchdog in its loop)."""
    import ast

    from test_trust import calls

    repo = Path(__file__).resolve().parents[2]
    files = [*(repo / "gpt2core").rglob("*.py"), *(repo / "workflow/scripts").glob("*.py"),
             *(repo / "benchmarks").glob("*.py")]
    unbounded = []
    for f in sorted(files):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for name in ("run", "call", "check_call", "check_output", "Popen"):
            for node in calls(tree, f"subprocess.{name}"):
                if not any(k.arg == "timeout" for k in node.keywords):
                    unbounded.append(f"{f.relative_to(repo)} subprocess.{name}")
    assert unbounded == ["gpt2core/watch.py subprocess.Popen"], unbounded


def test_a_process_whose_worker_died_is_stopped_after_a_grace_and_named_by_its_cause(tmp_path: Path) -> None:
    """As WikiExtractor's main process does when a worker dies: the worker's traceback is printed and the
    parent waits for it forever."""
    script = ("import multiprocessing as mp, time\n"
              "def work():\n    raise MemoryError('worker ran out')\n"
              "if __name__ == '__main__':\n"
              "    p = mp.get_context('fork').Process(target=work); p.start()\n"
              "    while True:\n        print('waiting', flush=True); time.sleep(0.1)\n")
    (tmp_path / "hang.py").write_text(script)
    started = time.monotonic()
    ran = run_watched([sys.executable, str(tmp_path / "hang.py")], None, 60,
                      Limits(stall_s=60, poll_s=0.2, dead_worker_s=1), keep=lambda line: "Error" in line,
                      died=lambda line: line.startswith("Traceback"))
    assert ran.stopped and "a worker died" in ran.stopped and time.monotonic() - started < 30
    assert any("MemoryError: worker ran out" in line for line in ran.kept)


@pytest.mark.e2e
def test_the_workflow_gives_extract_its_deadline_from_the_config(tmp_path: Path) -> None:
    from conftest import run_snakemake, tiny_config, write_config

    write_config(tmp_path, tiny_config(limits={"extract_deadline_floor_s": 0.001, "extract_deadline_s_per_mb": 0}))
    target = "data/extract/samplewiki/samplewiki-pages-articles.xml.bz2"
    proc = run_snakemake(tmp_path, target, check=False, timeout=300)
    errors = {ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")}
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-3000:]
    assert "WikiExtractor stopped: ran past its deadline of 0 s" in errors.pop()
    assert not (tmp_path / target).exists()
