"""Shared fixtures: where the reference data lies, and a runner for the real Snakemake workflow."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
SAMPLE = REPO / "resources" / "sample"
BIN = Path(sys.executable).parent


def shared_file(relpath: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{relpath} (reference data; absent on this machine)")
    return path


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_snakemake(workdir: Path, *args: str, cores: int = 2, check: bool = True,
                  timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real workflow in `workdir` (which holds its own config.yaml)."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", str(cores), *args]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def tiny_config(**overrides: dict) -> dict:
    """The embedded default, with paths made absolute, then section-wise overrides."""
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    for corpus in config["corpora"]:
        for source in corpus["sources"]:
            if "://" not in source["url"]:
                source["url"] = str(REPO / source["url"])
    for key in ("wiki103", "lambada"):
        source = config.get("eval", {}).get(key, {}).get("source")
        if source and "://" not in source["url"]:
            source["url"] = str(REPO / source["url"])
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


class _FilesHandler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files` ({path: bytes}, 404 otherwise); counts requests per path in `server.hits`."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1  # type: ignore[attr-defined]
        data = self.server.files.get(self.path)  # type: ignore[attr-defined]
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_files(files: dict[str, bytes]) -> Iterator[tuple[http.server.ThreadingHTTPServer, str]]:
    """A real HTTP server on 127.0.0.1 for download tests: (server, base URL); `server.shutdown()` takes it
    away mid-test (what a machine without internet sees)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FilesHandler)
    server.files, server.hits = dict(files), {}  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
