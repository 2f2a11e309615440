"""Fault injection for the real workflow: start `snakemake --cores 2 all` in its own session, wait until a
stage's job is running, sleep a seeded random time inside it, and kill the whole session (Snakemake and its
jobs) with SIGKILL or SIGINT. Then compare what a plain rerun leaves with an uninterrupted run's outputs.

Every injected fault is printed (stage, signal, seed, delay) and appended to REPORT so a failure can be
replayed: WIKIGPT_FAULT_SEED=<seed> fixes the base seed of a session (each fault adds its index).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from conftest import BIN, REPO, tiny_config, write_config

# Ordered stages and how their running job shows in the process table (`script:` jobs run as
# .snakemake/scripts/tmpXXXX.<rule>.py; train is torchrun -m gpt2core.train).
STAGE_MARKERS = {
    "download": ".download.py",
    "extract": ".extract.py",
    "presplit": ".presplit.py",
    "tokenizer": ".tokenizer.py",
    "tokenize": ".tokenize.py",
    "train": "gpt2core.train",
    "merge": ".merge.py",
    "ppl_wiki103": ".ppl_wiki103.py",
}
# What each stage writes (relative to the working directory), in DAG order; a stage's snapshot for a test
# that starts "just before it" removes its outputs and everything after.
STAGE_OUTPUTS = {
    "download": ["data/downloads"],
    "extract": ["data/extract"],
    "presplit": ["data/eval", "data/presplit"],
    "tokenizer": ["results/tokenizer"],
    "tokenize": ["data/tokens", "results/data"],
    "train": ["results/train", "checkpoints", "results/loss_curve.png"],
    "merge": ["results/model", "results/samples.jsonl"],
    "ppl_wiki103": ["results/ppl_wiki103.txt", "results/ppl_wiki103.json", "results/eval_table.html"],
}
# Fields that measure time or memory, not results: the only bytes allowed to differ between two runs.
TIMING_KEYS = {"tokens_per_s", "mfu", "mem_mb", "step_time_s", "wall_time_s", "wall_time"}
TIMING_ROWS = ("throughput", "wall time")
LOCK_MESSAGE = "Directory cannot be locked"


def fault_config(workdir: Path) -> dict:
    """The embedded default made tiny: a 2-layer model, 24 steps with a checkpoint every 6, no LAMBADA."""
    config = tiny_config(
        model={"n_layer": 2, "n_head": 2, "n_embd": 64, "seq_len": 64, "n_positions": 64},
        train={"iters": 24, "save_interval": 6, "eval_interval": 12, "eval_iters": 2, "micro_batch": 8,
               "log_interval": 4, "keep_last": 2},
        tokenizer={"kind": "bpe", "vocab_size": 512, "min_frequency": 2},
        generate={"prompts": ["The history of"], "max_new_tokens": 8},
    )
    config["eval"]["lambada"]["enabled"] = False
    write_config(workdir, config)
    return config


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The plain command a user types in the working directory (the workflow profile adds the rest)."""
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2", *args]


def env() -> dict[str, str]:
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")


def run_plain(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 all` in `workdir`, to completion."""
    return subprocess.run(snakemake_cmd(workdir, *args), cwd=workdir, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def start_plain(workdir: Path, log: Path) -> subprocess.Popen:
    """Start `snakemake --cores 2 all` in a new session (its jobs share the session id = its pid)."""
    with open(log, "w") as fh:
        return subprocess.Popen(snakemake_cmd(workdir, "all"), cwd=workdir, env=env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _live_processes() -> list[tuple[int, list[str]]]:
    """(pid, fields of /proc/<pid>/stat after the command name) of every live process but this one."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone
        if fields[0] != "Z":
            found.append((int(entry.name), fields))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""  # a process on its way out has no cwd left, though it is still alive


def directory_processes(workdir: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every live process, in any session, whose working directory is `workdir`."""
    target = str(workdir.resolve())
    return [(pid, _cmdline(pid)) for pid, _fields in _live_processes() if _cwd(pid) == target]


def session_processes(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every live process in session `sid` (its processes on their way out included)."""
    return [(pid, _cmdline(pid)) for pid, fields in _live_processes() if int(fields[3]) == sid]


def stage_running(sid: int, stage: str) -> bool:
    return any(STAGE_MARKERS[stage] in cmd for _, cmd in session_processes(sid))


@dataclass
class Fault:
    """One injected fault and what happened to it (a row of the table in docs/reliability.md)."""

    stage: str
    signal: str
    seed: int
    delay_s: float
    inside: bool = False          # the stage's job was still running when the signal was sent
    stage_seen_s: float = 0.0     # seconds from start until the stage's job appeared
    stale_lock: bool = False      # the plain rerun first met a lock left by the killed Snakemake
    rerun_ok: bool = False

    def line(self) -> str:
        return (f"fault stage={self.stage} signal={self.signal} seed={self.seed} delay={self.delay_s:.3f}s "
                f"inside={self.inside} stale_lock={self.stale_lock}")


REPORT: list[Fault] = []


def base_seed() -> int:
    value = os.environ.get("WIKIGPT_FAULT_SEED")
    seed = int(value) if value else random.SystemRandom().randrange(1, 2**31)
    print(f"fault suite base seed: WIKIGPT_FAULT_SEED={seed}", flush=True)
    return seed


def _unlock_if_stale(workdir: Path, output: str, previous: Fault | None) -> bool:
    """A run refused because a SIGKILLed Snakemake left its lock: note it on the fault that left it and
    remove the lock with --unlock (Snakemake's own advice) until the workflow clears stale locks itself
    (workflow/lib/snakemake_locks.clear_stale_locks, hooked into rules/common.smk)."""
    if LOCK_MESSAGE not in output:
        return False
    if previous is not None:
        previous.stale_lock = True
    unlock = run_plain(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    return True


def inject(workdir: Path, stage: str, sig: signal.Signals, seed: int, max_delay: float,
           previous: Fault | None = None, timeout: float = 300, only_job: bool = False) -> Fault:
    """Start a plain run, wait for `stage`'s job, sleep uniform(0, max_delay) (cut short if the job ends)
    and send `sig` to the whole session (as a kill -9 of the process group or a Ctrl-C would); wait for
    everything in it to be gone. `previous`: the fault this run is the rerun of. `only_job`: signal only
    the stage's job processes (as the OOM killer would), and let Snakemake notice."""
    delay = random.Random(seed).uniform(0.0, max_delay)
    fault = Fault(stage, sig.name + (" (job only)" if only_job else ""), seed, delay)
    print(f"fault stage={stage} signal={sig.name} seed={seed} delay={delay:.3f}s (injecting)", flush=True)
    log = workdir / f"fault-{stage}-{sig.name}.log"
    for _attempt in range(2):
        proc = start_plain(workdir, log)
        sid, t0 = proc.pid, time.monotonic()
        try:
            while not stage_running(sid, stage) and proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(f"stage {stage} did not start within {timeout} s")
                time.sleep(0.005)
            if proc.poll() is None:
                fault.stage_seen_s = time.monotonic() - t0
                end = time.monotonic() + delay
                while time.monotonic() < end and stage_running(sid, stage):
                    time.sleep(0.005)
                fault.inside = stage_running(sid, stage)
                if only_job:
                    for pid, cmd in session_processes(sid):
                        if STAGE_MARKERS[stage] in cmd:
                            os.kill(pid, sig)
                else:
                    os.killpg(sid, sig)
                proc.wait(timeout=120)
                break
        finally:
            if proc.poll() is None:
                os.killpg(sid, signal.SIGKILL)
                proc.wait(timeout=60)
        if not _unlock_if_stale(workdir, log.read_text(), previous):
            raise AssertionError(f"snakemake ended ({proc.returncode}) before stage {stage} ran:\n"
                                 + log.read_text()[-3000:])
    else:
        raise AssertionError(f"stage {stage} never started:\n{log.read_text()[-3000:]}")
    deadline = time.monotonic() + 30
    # torchrun's workers run in their own session and die when the kernel tells them torchrun died, moments
    # later: wait for every process working in this directory, not only the killed session's.
    while (session_processes(sid) or directory_processes(workdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = session_processes(sid) + directory_processes(workdir)
    if left:
        os.killpg(sid, signal.SIGKILL)
        raise AssertionError(f"processes outlived the killed run by 30 s: {left}")
    print(fault.line(), flush=True)
    REPORT.append(fault)
    return fault


def rerun(workdir: Path, fault: Fault | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The plain rerun `snakemake --cores 2 all`, to completion (see _unlock_if_stale for a stale lock)."""
    proc = run_plain(workdir, "all", timeout=timeout)
    if proc.returncode != 0 and _unlock_if_stale(workdir, proc.stdout + proc.stderr, fault):
        proc = run_plain(workdir, "all", timeout=timeout)
    if fault is not None:
        fault.rerun_ok = proc.returncode == 0
    assert proc.returncode == 0, f"plain rerun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _normalised(rel: str, data: bytes) -> bytes:
    """Bytes with the timing fields removed, for the three outputs that record how long things took."""
    if rel == "results/train/metrics.jsonl":
        rows = [{k: v for k, v in json.loads(x).items() if k not in TIMING_KEYS} for x in data.splitlines()]
        return b"\n".join(json.dumps(r, sort_keys=True).encode() for r in rows)
    if rel == "results/train/done.json":
        return json.dumps({k: v for k, v in json.loads(data).items() if k not in TIMING_KEYS},
                          sort_keys=True).encode()
    if rel == "results/eval_table.html":
        return b"\n".join(x for x in data.splitlines() if not any(r.encode() in x for r in TIMING_ROWS))
    return data


def final_outputs(workdir: Path) -> dict[str, bytes]:
    """Every file under data/ and results/ (temporary leftovers included, so they show up as a
    difference) and the final checkpoint's weights; timing fields normalised away."""
    out = {}
    for top in ("data", "results"):
        for path in sorted((workdir / top).rglob("*")):
            if path.is_file():
                rel = path.relative_to(workdir).as_posix()
                out[rel] = _normalised(rel, path.read_bytes())
    done = json.loads((workdir / "results/train/done.json").read_text())
    out["<final checkpoint>/model.safetensors"] = (workdir / done["checkpoint"] / "model.safetensors").read_bytes()
    return out


def differences(reference: dict[str, bytes], other: dict[str, bytes]) -> list[str]:
    """Human-readable differences (missing, extra, differing files)."""
    diffs = [f"missing {k}" for k in sorted(set(reference) - set(other))]
    diffs += [f"extra {k}" for k in sorted(set(other) - set(reference))]
    diffs += [f"differs {k}" for k in sorted(set(reference) & set(other)) if reference[k] != other[k]]
    return diffs


def snapshot_before(reference: Path, dest: Path, stage: str) -> Path:
    """A copy of a finished run's working directory as it stood just before `stage`: the outputs of
    `stage` and of every later stage removed (Snakemake's metadata kept)."""
    shutil.copytree(reference, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("logs", "fault-*.log", "locks"))
    stages = list(STAGE_OUTPUTS)
    for later in stages[stages.index(stage):]:
        for rel in STAGE_OUTPUTS[later]:
            path = dest / rel
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    return dest


def stage_seconds(reference: Path, stage: str) -> float:
    """Longest wall time of `stage`'s jobs in the reference run (Snakemake's benchmark files)."""
    times = [float(p.read_text().splitlines()[1].split("\t")[0])
             for p in (reference / "logs/benchmarks" / stage).rglob("*.tsv")]
    return max(times) if times else 1.0


def report_table() -> str:
    """The docs/reliability.md table rows for every fault injected in this session."""
    rows = ["| stage | signal | seed | delay (s) | inside the stage | stale lock on rerun | plain rerun |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    rows += [f"| {f.stage} | {f.signal} | {f.seed} | {f.delay_s:.3f} | {f.inside} | {f.stale_lock} | "
             f"{'completed, outputs identical' if f.rerun_ok else 'FAILED'} |" for f in REPORT]
    return "\n".join(rows)


def dump_report(path: Path) -> None:
    path.write_text(json.dumps([asdict(f) for f in REPORT], indent=1) + "\n" + report_table() + "\n")
