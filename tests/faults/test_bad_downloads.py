"""Downloads from a server on 127.0.0.1 that misbehaves: each bad answer is refused or repaired, never kept
under the final name (no checksum is configured, so nothing later would catch it)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpt2core.data.download import Transfer, download
from gpt2core.errors import WikiGPTError, run_cli

V1 = bytes(range(256)) * 64
V2 = bytes(reversed(range(256))) * 64
FAST = Transfer(min_rate=1000, grace_s=1.0, read_timeout_s=5, retry_wait_s=0.01)


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """Serves `server.payload`; `server.mode` picks the fault; every request is noted in `server.seen`."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server naming)
        server = self.server
        server.seen.append(self.headers.get("Range"))  # type: ignore[attr-defined]
        getattr(self, f"_{server.mode}")(server.payload)  # type: ignore[attr-defined]

    def _head(self, status: int, length: int | None, ctype: str = "application/octet-stream",
              extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Connection", "close")
        self.end_headers()

    def _cut_then(self, data: bytes) -> bool:
        """The first answer stops halfway (a dropped connection); True when this request was that one."""
        if len(self.server.seen) > 1:  # type: ignore[attr-defined]
            return False
        self._head(200, len(data))
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.connection.shutdown(2)
        return True

    def _restart206(self, data: bytes) -> None:
        """Cut once; then answers a Range with 206 but the whole file from byte 0 (Content-Range says so)."""
        if self._cut_then(data):
            return
        if self.headers.get("Range"):
            self._head(206, len(data), extra={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
        else:
            self._head(200, len(data))
        self.wfile.write(data)

    def _changed(self, data: bytes) -> None:
        """No ETag, no Last-Modified: cut once while serving V1; then V2, honouring Range on it."""
        if self._cut_then(V1):
            return
        rng = self.headers.get("Range")
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        if rng:
            self._head(206, len(V2) - start, extra={"Content-Range": f"bytes {start}-{len(V2) - 1}/{len(V2)}"})
        else:
            self._head(200, len(V2))
        self.wfile.write(V2[start:])

    def _html(self, data: bytes) -> None:
        page = b"<html><body>Service unavailable, try later</body></html>"
        self._head(200, len(page), ctype="text/html; charset=utf-8")
        self.wfile.write(page)

    def _html_untyped(self, data: bytes) -> None:
        page = b"\n  <!DOCTYPE html>\n<html><body>Login</body></html>"
        self._head(200, len(page))
        self.wfile.write(page)

    def _slow(self, data: bytes) -> None:
        """A byte every 0.2 s (each read gets something well within any socket timeout); stops by itself."""
        self._head(200, 100)
        for _ in range(100):
            try:
                self.wfile.write(b"x")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    def _badstatus(self, data: bytes) -> None:
        self.wfile.write(b"garbage that is no status line\r\n\r\n")
        self.wfile.flush()
        self.connection.shutdown(2)

    def _chunked_cut(self, data: bytes) -> None:
        """Chunked, the first answer (or every one when `server.always_cut`) dropped inside a chunk."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        cut = len(self.server.seen) == 1 or self.server.always_cut  # type: ignore[attr-defined]
        self.wfile.write(f"{len(data):x}\r\n".encode())
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(data + b"\r\n0\r\n\r\n")

    def log_message(self, *args):
        pass


@pytest.fixture
def bad_server() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    server.payload, server.seen, server.always_cut = V1, [], False  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _url(server: http.server.ThreadingHTTPServer, mode: str) -> str:
    server.mode = mode  # type: ignore[attr-defined]
    return f"http://127.0.0.1:{server.server_address[1]}/enwiki-latest-pages-articles.xml.bz2"


def _only_final(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_206_that_restarts_at_byte_0_is_not_appended(bad_server, tmp_path: Path) -> None:
    download({"url": _url(bad_server, "restart206")}, tmp_path / "d.bz2", FAST)
    assert (tmp_path / "d.bz2").read_bytes() == V1
    assert bad_server.seen[:2] == [None, None]  # no validator, no checksum: the part is not resumed at all


def test_a_206_whose_content_range_is_wrong_is_fetched_whole_even_when_resumable(bad_server, tmp_path) -> None:
    """With a checksum a part may be resumed without validators; a 206 from byte 0 is still not appended."""
    import hashlib

    url = _url(bad_server, "restart206")
    download({"url": url, "sha256": hashlib.sha256(V1).hexdigest()}, tmp_path / "d.bz2", FAST)
    assert (tmp_path / "d.bz2").read_bytes() == V1
    assert bad_server.seen == [None, f"bytes={len(V1) // 2}-", None]


def test_a_file_changed_between_attempts_on_a_server_without_validators_is_fetched_whole(bad_server, tmp_path):
    download({"url": _url(bad_server, "changed")}, tmp_path / "d.bz2", FAST)
    assert (tmp_path / "d.bz2").read_bytes() == V2  # not V1's first half spliced onto V2's second half
    assert bad_server.seen == [None, None]


@pytest.mark.parametrize("mode", ["html", "html_untyped"])
def test_an_html_page_is_refused_and_nothing_is_kept(bad_server, tmp_path: Path, mode: str, capsys) -> None:
    dest = tmp_path / "d.bz2"
    with pytest.raises(SystemExit):
        run_cli(lambda: download({"url": _url(bad_server, mode)}, dest, FAST))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HTML page" in err and "enwiki-latest-pages-articles.xml.bz2" in err
    assert _only_final(tmp_path) == []  # no part left to resume: a rerun asks again


def test_a_server_sending_a_byte_every_so_often_fails_on_the_transfer_deadline(bad_server, tmp_path) -> None:
    started = time.monotonic()
    with pytest.raises(WikiGPTError, match="too slow"):
        download({"url": _url(bad_server, "slow")}, tmp_path / "d.bz2", FAST)
    assert time.monotonic() - started < 10  # grace 1 s: fails after about 1.5 s, not after 20 s
    assert not (tmp_path / "d.bz2").exists()


def test_a_bad_status_line_is_retried_then_one_line(bad_server, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(lambda: download({"url": _url(bad_server, "badstatus")}, tmp_path / "d.bz2", FAST))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BadStatusLine" in err
    assert len(bad_server.seen) == FAST.retries


def test_an_incomplete_chunked_read_is_retried_and_completes(bad_server, tmp_path: Path) -> None:
    download({"url": _url(bad_server, "chunked_cut")}, tmp_path / "d.bz2", FAST)
    assert (tmp_path / "d.bz2").read_bytes() == V1
    assert len(bad_server.seen) == 2


def test_an_incomplete_read_every_time_is_one_line(bad_server, tmp_path: Path, capsys) -> None:
    bad_server.always_cut = True
    with pytest.raises(SystemExit):
        run_cli(lambda: download({"url": _url(bad_server, "chunked_cut")}, tmp_path / "d.bz2", FAST))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "IncompleteRead" in err


def test_a_private_local_source_is_copied_private(tmp_path: Path) -> None:
    src = tmp_path / "secret.jsonl"
    src.write_text('{"text": "x"}\n')
    src.chmod(0o600)
    download({"url": str(src)}, tmp_path / "out" / "secret.jsonl")
    assert (tmp_path / "out" / "secret.jsonl").stat().st_mode & 0o777 == 0o600
    src.chmod(0o640)
    (tmp_path / "out" / "secret.jsonl").unlink()
    download({"url": str(src)}, tmp_path / "out" / "secret.jsonl")
    assert (tmp_path / "out" / "secret.jsonl").stat().st_mode & 0o777 == 0o640


@pytest.mark.e2e
def test_the_workflow_takes_the_transfer_limits_from_the_config(bad_server, tmp_path: Path) -> None:
    """limits.download_* reach the download job: the trickling server fails it in seconds, one line."""
    from conftest import run_snakemake, write_config

    url = _url(bad_server, "slow")
    write_config(tmp_path, {"corpora": [{"name": "c", "sources": [{"url": url}]}],
                            "limits": {"download_min_rate": 1000, "download_grace_s": 1}})
    target = "data/downloads/c/enwiki-latest-pages-articles.xml.bz2"
    proc = run_snakemake(tmp_path, target, check=False, timeout=120)
    errors = {ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")}
    assert proc.returncode != 0 and len(errors) == 1 and "too slow" in errors.pop()
    assert not (tmp_path / target).exists()


@pytest.mark.e2e
def test_a_source_file_name_with_braces_is_a_config_error_before_any_job(tmp_path: Path) -> None:
    from conftest import SAMPLE, run_snakemake, write_config

    src = tmp_path / "dump{x}.xml.bz2"
    src.write_bytes((SAMPLE / "samplewiki-pages-articles.xml.bz2").read_bytes())
    work = tmp_path / "w"
    work.mkdir()
    write_config(work, {"corpora": [{"name": "c", "sources": [{"url": str(src)}]}]})
    proc = run_snakemake(work, "-n", check=False, timeout=300)
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
    assert "dump{x}.xml.bz2" in errors[0] and "braces" in errors[0] and "WildcardError" not in proc.stderr


def test_a_trickling_checksum_list_fails_on_the_transfer_deadline(bad_server, tmp_path: Path) -> None:
    slow = _url(bad_server, "slow").replace(".xml.bz2", "-sha1sums.txt")
    started = time.monotonic()
    with pytest.raises(WikiGPTError, match="too slow"):
        download({"url": slow.replace("-sha1sums.txt", ".xml.bz2"), "checksums_url": slow}, tmp_path / "d.bz2", FAST)
    assert time.monotonic() - started < 10


@pytest.mark.e2e
@pytest.mark.parametrize("limits, expect", [
    ({"download_min_rate": 0}, "limits.download_min_rate: 0 is less than or equal to the minimum of 0"),
    ({"download_deadline_s": 5}, "unknown key 'download_deadline_s' in limits"),
])
def test_a_bad_limit_is_a_config_error_before_any_job(tmp_path: Path, limits: dict, expect: str) -> None:
    from conftest import run_snakemake, tiny_config, write_config

    write_config(tmp_path, tiny_config(limits=limits))
    proc = run_snakemake(tmp_path, "-n", check=False, timeout=300)
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and errors == [f"error: config: {expect}"], proc.stderr[-2000:]
