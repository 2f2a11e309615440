"""Fetch one source (local path, file:// or http(s):// URL) to its place under data/downloads/.

Bytes go to a stable `.NAME.part` file beside the target (so an interrupted HTTP download resumes with a
Range request where the server allows it), are checked against the source's checksum, and only then renamed
to the final name: a mismatch or a failure leaves nothing under that name. A remote checksum list is read once
and kept beside the files it lists (read_checksums), so a workflow that expands a dump glob from it builds its
DAG offline afterwards, and the parts are checked against the same list that named them.

A local source with `link: true` is not copied: its checksum (if any) is checked in place and a symbolic link
to it takes the target's name, so a large local corpus is not stored twice. Snakemake then dates the part
by the later of the link and the file, so editing the file reruns what reads it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from tqdm import tqdm

from gpt2core.data.checksums import expand_glob, expected_digest, file_digest, parse_sums
from gpt2core.errors import WikiGPTError, disk_full
from gpt2core.fsutil import naming_full_disk, write_text_atomic

CHUNK = 1 << 20
RETRIES = 3
TIMEOUT_S = 60


def is_remote(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")


def local_path(url: str) -> Path:
    """The file a local path or file:// URL names."""
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return Path(url)


def read_small(url: str) -> str:
    """Text of a small file (a checksum list) from any supported location."""
    try:
        if is_remote(url):
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
                return resp.read().decode("utf-8")
        return local_path(url).read_text(encoding="utf-8")
    except (OSError, urllib.error.URLError, UnicodeDecodeError) as exc:
        raise WikiGPTError(f"cannot read {url}: {_reason(exc)}") from None


def kept_list_path(url: str, folder: str | Path | None) -> Path | None:
    """Where the copy of a remote checksum list is kept in `folder` (None: a local list is never copied)."""
    if folder is None or not is_remote(url):
        return None
    name = Path(urlparse(url).path).name or "checksums.txt"
    return Path(folder) / f".sums-{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"


def read_checksums(url: str, keep_in: str | Path | None = None) -> str:
    """Text of a checksum list, checked to be one (an HTML error page is an error, never kept). A remote
    list is kept in `keep_in` after its first read, and that copy is what later DAG builds and downloads
    use: they work offline and agree on the parts; delete the copy to read the list again."""
    cached = kept_list_path(url, keep_in)
    if cached is not None and cached.is_file():
        return cached.read_text(encoding="utf-8")
    text = read_small(url)
    parse_sums(text, url)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cached, text)
    return text


def _reason(exc: BaseException) -> str:
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
    if not src.is_file():
        raise WikiGPTError(f"{src}: no such file")
    with open(src, "rb") as fin, open(part, "wb") as fout, _bar(src.stat().st_size, 0, src.name) as bar:
        while block := fin.read(CHUNK):
            fout.write(block)
            bar.update(len(block))


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


def _fetch_http_once(url: str, part: Path) -> None:
    """One attempt: resume from the bytes already in `part` if the server answers 206. With the validator
    the server gave when `part` was started, the request says If-Range: a file changed on the server since
    (a republished `latest` dump) comes back whole (200) instead of being spliced onto the old bytes."""
    have = part.stat().st_size if part.exists() else 0
    saved = validator_path(part)
    request = urllib.request.Request(url, headers={"User-Agent": "wikigpt"})
    if have:
        request.add_header("Range", f"bytes={have}-")
        if saved.is_file():
            request.add_header("If-Range", saved.read_text(encoding="utf-8").strip())
    try:
        resp = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            if _unsatisfiable_size(exc.headers) == have:  # the part is whole (killed while being verified)
                return None
            part.unlink()  # a stale part longer than the file: start over
            return _fetch_http_once(url, part)
        raise
    with resp:
        resumed = have and resp.status == 206
        if not resumed:  # a new part: note what identifies this version of the file
            validator = _validator(resp.headers)
            if validator:
                saved.write_text(validator + "\n", encoding="utf-8")
            else:
                saved.unlink(missing_ok=True)
        mode = "ab" if resumed else "wb"
        start = have if resumed else 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length else None
        with open(part, mode) as fout, _bar(total, start, Path(urlparse(url).path).name) as bar:
            while block := resp.read(CHUNK):
                fout.write(block)
                bar.update(len(block))
        if total is not None and part.stat().st_size != total:
            raise OSError(f"connection closed after {part.stat().st_size} of {total} bytes")


def _fetch_http(url: str, part: Path) -> None:
    """Fetch with resume; a connection that broke after delivering bytes is retried, a dead one is not."""
    attempt = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            return _fetch_http_once(url, part)
        except urllib.error.HTTPError as exc:
            raise WikiGPTError(f"cannot download {url}: {_reason(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            if disk_full(exc):
                raise  # not the network's fault: no retry
            attempt += 1
            progressed = part.exists() and part.stat().st_size > before
            if not progressed or attempt >= RETRIES:
                raise WikiGPTError(f"cannot download {url}: {_reason(exc)}") from None
            time.sleep(attempt)


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


def download(source: dict, dest: str | Path) -> str | None:
    """Fetch `source` to `dest`, verify its checksum; return the verified 'algo:hex' (None if unchecked).
    A remote checksum list is read from (or kept as) its copy in `dest`'s folder (read_checksums)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    no_inline = not any(source.get(a) for a in ("sha256", "sha1", "md5"))
    sums_url = source.get("checksums_url") if no_inline else None
    kept = kept_list_path(sums_url, dest.parent) if sums_url else None
    was_kept = kept is not None and kept.is_file()
    sums = read_checksums(sums_url, dest.parent) if sums_url else None
    check_link(source)
    try:
        with naming_full_disk(dest):
            return _fetch_and_verify(source["url"], dest, expected_digest(source, dest.name, sums),
                                     bool(source.get("link")))
    except WikiGPTError as exc:
        if was_kept and ("HTTP 404" in str(exc) or "mismatch" in str(exc)):
            raise WikiGPTError(f"{exc} (checked against the kept copy of {sums_url}, {kept}: if the dump "
                               f"was republished since, delete that copy to read the list again)") from None
        raise


def _fetch_and_verify(url: str, dest: Path, expected: tuple[str, str] | None, link: bool = False) -> str | None:
    part = dest.with_name(f".{dest.name}.part")
    if part.is_symlink():  # left by a killed `link: true` download: a copy or fetch would write into its target
        part.unlink()
    if link:
        _link_local(local_path(url), part)
    elif is_remote(url):
        _fetch_http(url, part)
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


def expand_source(source: dict, keep_lists_in: str | Path | None = None) -> list[dict]:
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
    urls = expand_glob(source["url"], read_checksums(source["checksums_url"], keep_lists_in))
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
