"""Fetch one source (local path, file:// or http(s):// URL) to its place under data/downloads/.

Bytes go to a stable `.NAME.part` file beside the target (so an interrupted HTTP download resumes with a
Range request where the server allows it), are checked against the source's checksum, and only then renamed
to the final name: a mismatch or a failure leaves nothing under that name. A remote checksum list is read once
and kept beside the files it lists (read_checksums), so a workflow that expands a dump glob from it builds its
DAG offline afterwards, and the parts are checked against the same list that named them.

A local source with `link: true` is not copied: its checksum (if any) is checked in place and a symbolic link
to it takes the target's name, so a large local corpus is not stored twice. The workflow then dates the part
by the later of the link and the file, so editing the file reruns what reads it.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from gpt2core.data.checksums import expand_glob, expected_digest, file_digest, parse_sums
from gpt2core.errors import WikiGPTError, disk_full
from gpt2core.fsutil import naming_full_disk, write_text_atomic

CHUNK = 1 << 20
TIMEOUT_S = 60
MAX_SMALL = 16 << 20  # a checksum list; Wikimedia's are a few kB


@dataclass(frozen=True)
class Transfer:
    """What one HTTP download may take (config `limits.download_*`; these defaults where unset)."""

    min_rate: float = 10_000  # bytes/s the transfer must average once grace_s has passed
    grace_s: float = 300  # slow starts allowed for this long: the deadline is grace_s + size / min_rate
    read_timeout_s: float = TIMEOUT_S  # one read that gets nothing for this long fails the attempt
    retries: int = 3
    retry_wait_s: float = 1.0  # attempt k waits k times this

    @classmethod
    def from_limits(cls, limits: dict | None) -> Transfer:
        limits = limits or {}
        keys = {"min_rate": "download_min_rate", "grace_s": "download_grace_s",
                "read_timeout_s": "download_read_timeout_s"}
        return cls(**{field: limits[key] for field, key in keys.items() if key in limits})


def is_remote(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")


def local_path(url: str) -> Path:
    """The file a local path or file:// URL names."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return Path(url)


def read_small(url: str, limits: Transfer | None = None) -> str:
    """Text of a small file (a checksum list) from any supported location; a remote one under the same
    transfer deadline as a download (a trickling server fails, it does not hold the DAG build)."""
    try:
        if is_remote(url):
            clock = _Deadline(url, limits or Transfer())
            with urllib.request.urlopen(url, timeout=clock.limits.read_timeout_s) as resp:
                data = b""
                while len(data) <= MAX_SMALL and (block := resp.read1(MAX_SMALL + 1 - len(data))):
                    data += block
                    clock.add(len(block))
        else:
            with open(local_path(url), "rb") as fh:
                data = fh.read(MAX_SMALL + 1)
        if len(data) > MAX_SMALL:
            raise WikiGPTError(f"{url}: longer than {MAX_SMALL} bytes, not a checksum list")
        return data.decode("utf-8")
    except (OSError, urllib.error.URLError, http.client.HTTPException, UnicodeDecodeError) as exc:
        raise WikiGPTError(f"cannot read {url}: {_reason(exc)}") from None


def kept_list_path(url: str, folder: str | Path | None) -> Path | None:
    """Where the copy of a remote checksum list is kept in `folder` (None: a local list is never copied)."""
    if folder is None or not is_remote(url):
        return None
    name = Path(urlparse(url).path).name or "checksums.txt"
    return Path(folder) / f".sums-{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"


def read_checksums(url: str, keep_in: str | Path | None = None, limits: Transfer | None = None) -> str:
    """Text of a checksum list, checked to be one (an HTML error page is an error, never kept). A remote
    list is kept in `keep_in` after its first read, and that copy is what later DAG builds and downloads
    use: they work offline and agree on the parts; delete the copy to read the list again."""
    cached = kept_list_path(url, keep_in)
    if cached is not None and cached.is_file():
        return cached.read_text(encoding="utf-8")
    text = read_small(url, limits)
    parse_sums(text, url)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cached, text)
    return text


def _reason(exc: BaseException) -> str:
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP answer ({type(exc).__name__}: {str(exc)[:80] or 'no detail'})"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def _bar(total: int | None, initial: int, name: str) -> tqdm:
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, mininterval=1.0, disable=None)


def _copy_local(src: Path, part: Path) -> None:
    """Copy with the source's permission bits: a private (0600) file stays private, from the first byte
    (the copy is created 0600 and given the source's bits when complete)."""
    if not src.is_file():
        raise WikiGPTError(f"{src}: no such file")
    part.unlink(missing_ok=True)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(src, "rb") as fin, open(fd, "wb") as fout, _bar(src.stat().st_size, 0, src.name) as bar:
        while block := fin.read(CHUNK):
            fout.write(block)
            bar.update(len(block))
    os.chmod(part, src.stat().st_mode & 0o7777)


def _unsatisfiable_size(headers: object) -> int | None:
    """The file size a 416 answer states (`Content-Range: bytes */N`), or None."""
    value = headers.get("Content-Range", "") if headers is not None else ""
    unit, _, size = value.partition(" */")
    return int(size) if unit.strip() == "bytes" and size.strip().isdigit() else None


def validator_path(part: Path) -> Path:
    """Where the server's validator (ETag or Last-Modified) of a partial download is kept."""
    return part.with_name(f"{part.name}.validator")


def _validator(headers: object) -> str | None:
    """What `If-Range` may carry: a strong ETag, else Last-Modified."""
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else headers.get("Last-Modified")


def _content_range_start(headers: object) -> int | None:
    """Where a 206 answer's bytes start (`Content-Range: bytes START-END/TOTAL`), None when it says nothing."""
    value = headers.get("Content-Range", "") or ""
    unit, _, spec = value.strip().partition(" ")
    first = spec.split("-", 1)[0]
    return int(first) if unit == "bytes" and first.isdigit() else None


def _looks_like_html(content_type: str | None, first: bytes) -> bool:
    """An error or login page where a file was expected: said by its Content-Type or by its first bytes."""
    if content_type and content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml"):
        return True
    head = first[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


class _Deadline:
    """A transfer's clock: after `grace_s` it must have averaged `min_rate` bytes/s, so a server that sends a
    byte every 10 s (each read well within the socket timeout) fails too; the overall deadline of a file of
    N bytes is grace_s + N / min_rate."""

    def __init__(self, url: str, limits: Transfer) -> None:
        self.url, self.limits, self.start, self.got = url, limits, time.monotonic(), 0

    def add(self, n: int) -> None:
        self.got += n
        elapsed = time.monotonic() - self.start
        if self.got < (elapsed - self.limits.grace_s) * self.limits.min_rate:
            raise WikiGPTError(f"cannot download {self.url}: too slow ({self.got} bytes in {elapsed:.0f} s, "
                               f"below limits.download_min_rate {self.limits.min_rate:g} bytes/s after "
                               f"{self.limits.grace_s:g} s)")


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    validator_path(part).unlink(missing_ok=True)


def _fetch_http_once(url: str, part: Path, limits: Transfer, checked: bool) -> None:
    """One attempt: resume from the bytes already in `part` if the server answers 206 from exactly there.

    With the validator the server gave when `part` was started, the request says If-Range: a file changed on
    the server since (a republished `latest` dump) comes back whole (200) instead of being spliced onto the
    old bytes. A part started without a validator is resumed only when a checksum will check the result
    (`checked`); otherwise it is fetched whole, since nothing could tell a changed file from the same one."""
    saved = validator_path(part)
    if part.exists() and not checked and not saved.is_file():
        _discard(part)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "wikigpt"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        if saved.is_file():
            request.add_header("If-Range", saved.read_text(encoding="utf-8").strip())
    try:
        resp = urllib.request.urlopen(request, timeout=limits.read_timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            if _unsatisfiable_size(exc.headers) == have:  # the part is whole (killed while being verified)
                return None
            _discard(part)  # a stale part longer than the file: start over
            return _fetch_http_once(url, part, limits, checked)
        raise
    with resp:
        resumed = bool(have) and resp.status == 206
        if resumed and _content_range_start(resp.headers) != have:  # e.g. restarts at byte 0: never append
            resp.close()
            _discard(part)
            return _fetch_http_once(url, part, limits, checked)
        if not resumed:  # a new part: note what identifies this version of the file
            validator = _validator(resp.headers)
            if validator:
                saved.write_text(validator + "\n", encoding="utf-8")
            else:
                saved.unlink(missing_ok=True)
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        clock = _Deadline(url, limits)
        with open(part, "ab" if resumed else "wb") as fout, _bar(total, start, Path(urlparse(url).path).name) as bar:
            first = not resumed
            while block := resp.read1(CHUNK):
                if first and _looks_like_html(resp.headers.get("Content-Type"), block):
                    fout.close()
                    _discard(part)
                    raise WikiGPTError(f"cannot download {url}: the server sent an HTML page "
                                       f"({resp.headers.get('Content-Type') or 'no Content-Type'}), not the file")
                first = False
                fout.write(block)
                bar.update(len(block))
                clock.add(len(block))
        if total is not None and part.stat().st_size != total:
            raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")


RETRYABLE = (urllib.error.URLError, OSError, http.client.HTTPException)


def _fetch_http(url: str, part: Path, limits: Transfer, checked: bool) -> None:
    """Fetch with resume. A connection that broke after delivering bytes is retried, and so is a garbled
    answer (BadStatusLine, IncompleteRead); a host that does not answer at all is not."""
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            return _fetch_http_once(url, part, limits, checked)
        except urllib.error.HTTPError as exc:
            raise WikiGPTError(f"cannot download {url}: {_reason(exc)}") from None
        except RETRYABLE as exc:
            if disk_full(exc):
                raise  # not the network's fault: no retry
            attempt += 1
            progressed = part.exists() and part.stat().st_size > before
            garbled = isinstance(exc, http.client.HTTPException)
            if not (progressed or garbled) or attempt >= limits.retries:
                raise WikiGPTError(f"cannot download {url}: {_reason(exc)}") from None
            time.sleep(attempt * limits.retry_wait_s)


def check_link(source: dict) -> None:
    """`link: true` is for local files only: a remote file has nothing to link to."""
    if source.get("link") and is_remote(source["url"]):
        raise WikiGPTError(f"{source['url']}: link: true needs a local file (a remote one is downloaded)")


def _link_local(src: Path, part: Path) -> None:
    """A symbolic link to the absolute source path at `part` (checked, then renamed into place like a copy)."""
    if not src.is_file():
        raise WikiGPTError(f"{src}: no such file")
    part.unlink(missing_ok=True)
    part.symlink_to(src.resolve())


def download(source: dict, dest: str | Path, limits: Transfer = Transfer()) -> str | None:
    """Fetch `source` to `dest`, verify its checksum; return the verified 'algo:hex' (None if unchecked).
    A remote checksum list is read from (or kept as) its copy in `dest`'s folder (read_checksums)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    no_inline = not any(source.get(a) for a in ("sha256", "sha1", "md5"))
    sums_url = source.get("checksums_url") if no_inline else None
    kept = kept_list_path(sums_url, dest.parent) if sums_url else None
    was_kept = kept is not None and kept.is_file()
    sums = read_checksums(sums_url, dest.parent, limits) if sums_url else None
    check_link(source)
    try:
        with naming_full_disk(dest):
            return _fetch_and_verify(source["url"], dest, expected_digest(source, dest.name, sums),
                                     bool(source.get("link")), limits)
    except WikiGPTError as exc:
        if was_kept and ("HTTP 404" in str(exc) or "mismatch" in str(exc)):
            raise WikiGPTError(f"{exc} (checked against the kept copy of {sums_url}, {kept}: if the dump "
                               f"was republished since, delete that copy to read the list again)") from None
        raise


def _fetch_and_verify(url: str, dest: Path, expected: tuple[str, str] | None, link: bool = False,
                      limits: Transfer = Transfer()) -> str | None:
    part = dest.with_name(f".{dest.name}.part")
    if part.is_symlink():  # left by a killed `link: true` download: a copy or fetch would write into its target
        part.unlink()
    if link:
        _link_local(local_path(url), part)
    elif is_remote(url):
        _fetch_http(url, part, limits, checked=expected is not None)
    elif urlparse(url).scheme in ("", "file"):
        _copy_local(local_path(url), part)
    else:
        raise WikiGPTError(f"{url}: unsupported URL scheme (use a path, file://, http:// or https://)")
    if expected is not None:
        algo, want = expected
        got = file_digest(part, algo)  # through a link: the file itself
        if got != want:
            part.unlink()  # a link: only the link
            validator_path(part).unlink(missing_ok=True)
            raise WikiGPTError(f"{url}: {algo} mismatch: expected {want}, got {got}")
    os.replace(part, dest)
    validator_path(part).unlink(missing_ok=True)
    return f"{expected[0]}:{expected[1]}" if expected else None


def expand_source(source: dict, keep_lists_in: str | Path | None = None,
                  limits: Transfer | None = None) -> list[dict]:
    """One source per dump part: a URL whose file name is a glob (`...articles[0-9]*.xml-p*.bz2`) becomes
    every file the source's `checksums_url` lists that matches it (sorted); other sources stay as they are.
    A local folder or a local glob without checksums_url becomes one source per file (JSON-lines corpora).
    Meant for config loading (Wikimedia ships enwiki as ~27 parts listed in one *-sha1sums.txt); a remote
    list is read once and kept in `keep_lists_in` (read_checksums): pass the folder the parts download to."""
    check_link(source)
    if not is_remote(source["url"]) and local_path(source["url"]).is_dir():
        return _expand_folder(source)
    name = source["url"].rstrip("/").rsplit("/", 1)[-1]
    if not any(c in name for c in "*?["):
        return [source]
    if not is_remote(source["url"]) and not source.get("checksums_url"):
        return _expand_local_glob(source)
    if not source.get("checksums_url"):
        raise WikiGPTError(f"{source['url']}: a glob in a URL needs checksums_url to list the files")
    urls = expand_glob(source["url"], read_checksums(source["checksums_url"], keep_lists_in, limits))
    if not urls:
        raise WikiGPTError(f"{source['checksums_url']}: lists no file matching {name}")
    return [{**source, "url": url} for url in urls]


def _one_per_file(source: dict, files: list[Path], where: str) -> list[dict]:
    """Sources for local files (checksums do not carry over, `link` does); their names must differ (they
    name parts)."""
    names = [f.name for f in files]
    if len(set(names)) != len(names):
        dup = sorted(n for n in set(names) if names.count(n) > 1)[0]
        raise WikiGPTError(f"{where}: two files are named {dup} (file names name a corpus's parts)")
    link = {"link": True} if source.get("link") else {}  # only when set: other parts keep their params
    return [{"url": str(f), **link} for f in files]


def _expand_folder(source: dict) -> list[dict]:
    """A local folder (kind jsonl/mnbvc): one source per JSON-lines file in it, sorted."""
    from gpt2core.data.sources.jsonl import source_files

    folder = local_path(source["url"])
    files = source_files(folder)
    if not files:
        raise WikiGPTError(f"{folder}: folder holds no .jsonl/.json(.gz/.zst) file")
    return _one_per_file(source, files, str(folder))


def _expand_local_glob(source: dict) -> list[dict]:
    """A local path with a glob in it: every matching file, sorted."""
    pattern = str(local_path(source["url"]))
    files = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    if not files:
        raise WikiGPTError(f"{pattern}: no file matches")
    return _one_per_file(source, files, pattern)


def check_local_source(source: dict, what: str, downloaded: str | Path) -> None:
    """A local source that is not there, and was never downloaded, stops the run before any job (the workflow
    calls this when it builds the DAG): the download job would only fail on it later. A copy made before the
    file went away keeps its results."""
    url = source["url"]
    if is_remote(url) or urlparse(url).scheme not in ("", "file"):  # the download names a bad scheme
        return
    if local_path(url).exists() or Path(downloaded).exists():
        return
    raise WikiGPTError(f"config: {what}: {url}: no such file")
