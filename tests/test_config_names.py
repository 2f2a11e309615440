"""Names and checksums in the config are whole-string patterns (issue 19, item 8): `run_name` "." or ".."
(checkpoints and locks in checkpoints/ or the project root) and a trailing newline (Python's `$` matches
before one, and jsonschema's `pattern` uses re.search) are refused before any job, through `snakemake -n`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SAMPLE, run_snakemake, write_config

SOURCE = {"url": str(SAMPLE / "samplewiki-pages-articles.xml.bz2")}


def dry_run(tmp_path: Path, run_name: str = "default", corpus: str = "wiki", **source: str):
    config = {"run_name": run_name, "corpora": [{"name": corpus, "sources": [{**SOURCE, **source}]}]}
    write_config(tmp_path, config)
    return run_snakemake(tmp_path, "-n", "results/data/manifest.json", check=False)


@pytest.mark.parametrize(("over", "key"), [
    ({"run_name": "."}, "run_name"),
    ({"run_name": ".."}, "run_name"),
    ({"run_name": "default\n"}, "run_name"),
    ({"corpus": "wiki\n"}, "name"),
    ({"sha256": "0" * 64 + "\n"}, "sha256"),
    ({"sha1": "0" * 40 + "\n"}, "sha1"),
    ({"md5": "0" * 32 + "\n"}, "md5"),
])
def test_a_bad_name_or_checksum_is_a_config_error_before_any_job(tmp_path: Path, over: dict, key: str) -> None:
    proc = dry_run(tmp_path, **over)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("error: config:")]
    assert proc.returncode != 0 and errors and key in errors[0], proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("run_name", ["my.run", "...", "..x", "run-2_b"])
def test_ordinary_names_pass(tmp_path: Path, run_name: str) -> None:
    proc = dry_run(tmp_path, run_name=run_name, sha256="0" * 64)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
