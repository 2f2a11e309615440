"""Every command line of the README, run exactly as printed, in a copy of the repository, after the README's
own install (a fresh virtualenv, not the test environment, which has extra packages: pygments came with
pytest, so `snakemake --report` passed here and failed for users).

Commands too long to run here (a 20 GB download, a GPU, a cluster) run as printed with `-n` added (Snakemake
plans every job and stops); `sbatch` is a stand-in on PATH that runs its `--wrap` command that way.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"

INSTALL_AND_RUN = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e . "
                   "&& snakemake")
INSTALL_AND_TEST = ("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && "
                    "pip install -e '.[test]' && pytest -q -n 2")
THEN = ["snakemake results/ppl_wiki103.txt", "snakemake --forcerun train", "snakemake --report report.html",
        'python -m gpt2core.generate --model-dir results/model --prompt "The history of"']
ONE_GPU = "snakemake all --configfile configs/gpt2-small-enwiki.yaml configs/gpt2-small-1gpu.yaml"
SLURM_PLUGIN = "pip install snakemake-executor-plugin-slurm"
SLURM = ("snakemake all --profile profiles/slurm --configfile configs/gpt2-small-enwiki.yaml "
         "configs/gpt2-medium-tp2.yaml")
MULTINODE_YAML = "echo 'train: {tp: 2, dp: 8, nnodes: 2}' > multinode.yaml"
SBATCH = ('sbatch -N 2 --gpus-per-node 8 --cpus-per-task 64 --time 48:00:00 --wrap "snakemake results/model/config.json '
          '--cores 64 --configfile configs/gpt2-small-enwiki.yaml configs/gpt2-medium-tp2.yaml multinode.yaml"')
COVERED = [INSTALL_AND_RUN, INSTALL_AND_TEST, *THEN, ONE_GPU, SLURM_PLUGIN, SLURM, MULTINODE_YAML, SBATCH]

# sbatch without a cluster: run the --wrap command here, planning only (-n), as a login node would submit it
FAKE_SBATCH = """#!/usr/bin/env bash
while [ $# -gt 0 ]; do if [ "$1" = --wrap ]; then exec bash -c "$2 -n"; fi; shift; done
echo 'fake sbatch: no --wrap' >&2; exit 2
"""
ENWIKI_SUMS = "https://dumps.wikimedia.org/enwiki/latest/enwiki-latest-sha1sums.txt"


def readme_commands(text: str) -> list[str]:
    """The lines of the README's ```bash blocks (a line ending in a backslash continues on the next)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip():
                commands.append(line.strip())
    return commands


def test_every_readme_command_is_one_this_file_runs() -> None:
    """A command added to (or changed in) the README fails here until the e2e test below runs it."""
    assert readme_commands(README.read_text(encoding="utf-8")) == COVERED


def _copy_repository(dest: Path) -> Path:
    """The files a clone would have (tracked, plus new ones not ignored), without venvs or results."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def _user_env(fake_bin: Path) -> dict:
    """A user's shell: no test virtualenv on PATH, the stand-in sbatch first."""
    test_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != test_bin]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTEST_ADDOPTS")}
    env["PATH"] = os.pathsep.join([str(fake_bin), *path])
    return env


def _sh(command: str, cwd: Path, env: dict, venv: bool = True, timeout: float = 1200) -> str:
    """`command` in bash as printed; `venv`: in the README's environment (activated, as "Then" says)."""
    line = f". .venv/bin/activate && {command}" if venv else command
    proc = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout + proc.stderr


def _keep_enwiki_list(repo: Path) -> None:
    """Planning the enwiki preset reads Wikimedia's checksum list once and keeps it; no internet here, so a
    kept copy naming one dump part stands in for it."""
    folder = repo / "data/downloads/enwiki"
    folder.mkdir(parents=True, exist_ok=True)
    name = f".sums-{hashlib.sha1(ENWIKI_SUMS.encode()).hexdigest()[:12]}-enwiki-latest-sha1sums.txt"
    (folder / name).write_text(f"{'a' * 40}  enwiki-latest-pages-articles1.xml-p1p41242.bz2\n", encoding="utf-8")


@pytest.mark.e2e
def test_readme_commands_as_printed_after_the_readme_install(tmp_path: Path) -> None:
    repo = _copy_repository(tmp_path / "wikigpt")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text(FAKE_SBATCH)
    (fake_bin / "sbatch").chmod(0o755)
    env = _user_env(fake_bin)

    console = _sh(INSTALL_AND_RUN, repo, env, venv=False)
    jobs = re.search(r"(\d+) jobs, ending", README.read_text(encoding="utf-8")).group(1)  # what the README says
    assert f"{jobs} of {jobs} steps (100%) done" in console, console[-3000:]
    assert re.search(r"^train: step 300/300 \(100%\), loss [\d.]+", console, re.M), console[-3000:]
    assert "WikiText-103 word-level perplexity: " in console and "Shell command" not in console
    assert (repo / "results/ppl_wiki103.txt").is_file()

    assert "Nothing to be done" in _sh(THEN[0], repo, env)
    forced = _sh(THEN[1], repo, env)
    assert "train: step 1/300" in forced and "wikigpt: done." in forced
    _sh(THEN[2], repo, env)  # pygments comes with the project now
    assert (repo / "report.html").stat().st_size > 100_000
    assert _sh(THEN[3], repo, env).startswith("The history of")

    _keep_enwiki_list(repo)
    (repo / "wikitext-103").mkdir()  # the README asks for the WikiText-103 test file there
    shutil.copy(repo / "resources/sample/wiki.test.tokens", repo / "wikitext-103/wiki.test.tokens")
    plan = _sh(f"{ONE_GPU} -n", repo, env)
    assert "This was a dry-run" in plan and "train" in plan
    _sh(MULTINODE_YAML, repo, env)
    plan = _sh(SBATCH, repo, env)
    assert "This was a dry-run" in plan and "rule train" in plan

    _sh(SLURM_PLUGIN, repo, env)
    plan = _sh(f"{SLURM} -n", repo, env)
    assert "This was a dry-run" in plan

    # the test command last: its install adds the test extras to the same environment
    env["PYTEST_ADDOPTS"] = "tests/test_console.py -k progress_lines -p no:cacheprovider"
    assert "1 passed" in _sh(INSTALL_AND_TEST, repo, env, venv=False)
