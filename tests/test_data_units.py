"""Unit tests of gpt2core.data pieces: fast, real libraries, real reference files where needed."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import serve_files, shared_file

from gpt2core.data import load_encoder
from gpt2core.data.checksums import expand_glob, expected_digest, parse_sums
from gpt2core.data.download import download
from gpt2core.data.presplit import BLOCK, presplit_shard, read_block, shard_blocks, shard_stats
from gpt2core.data.sentences import split_sentences
from gpt2core.data.shards import split_bounds, split_of, tokenize_shard
from gpt2core.data.tokenizer import build_gpt2, train_bpe
from gpt2core.errors import WikiGPTError

GPT2 = "gpt2_bpe"


# ---------------------------------------------------------------- sentences
def test_sentences_english_paragraphs_stay_apart():
    text = "First sentence here. Second one!\nHeading\n\nA new paragraph? Yes."
    assert split_sentences(text) == "First sentence here.\nSecond one!\nHeading\nA new paragraph?\nYes."


def test_sentences_chinese_end_punctuation_and_closing_quotes():
    out = split_sentences("他说：“好。”然后走了。这是真的吗？是的！")
    assert out.split("\n") == ["他说：“好。”", "然后走了。", "这是真的吗？", "是的！"]


def test_sentences_of_a_long_document_split_piece_by_piece_equal_one_call():
    """Pieces cut after newlines (bounded memory on a 50 MB page) give exactly the lines of one call."""
    english = ("Dr. Smith met Mr. Jones at 5 p.m. on Jan. 3. They talked. Was it useful? Yes!\n"
               "A heading\n\n  Indented line with e.g. an abbreviation. And U.S. politics.\n")
    chinese = "他说：“我们走吧。”\n“好的！”她回答。\n」结束了。然后呢？\n”\n"
    text = (english * 40 + chinese * 10) * 3
    whole = split_sentences(text, piece_chars=10 ** 9)
    assert "\n\n" not in whole and not whole.startswith("\n") and not whole.endswith("\n")
    for size in (1, 50, 333, 4096):
        assert split_sentences(text, piece_chars=size) == whole, size


# ---------------------------------------------------------------- checksums
SUMS = ("3b5d5c3712955042212316173ccf37be  enwiki-latest-pages-articles1.xml-p1p41242.bz2\n"
        "a6e1d4b5c6f6c3b2a1e0f9d8c7b6a5f4e3d2c1b0  enwiki-latest-pages-articles2.xml-p41243p151573.bz2\n"
        "0123456789abcdef0123456789abcdef01234567  enwiki-latest-pages-articles-multistream.xml.bz2\n")


def test_checksum_file_lookup_and_glob_expansion():
    table = parse_sums(SUMS, "sums.txt")
    assert table["enwiki-latest-pages-articles1.xml-p1p41242.bz2"][0] == "md5"
    assert table["enwiki-latest-pages-articles2.xml-p41243p151573.bz2"][0] == "sha1"
    urls = expand_glob("https://x/enwiki/latest/enwiki-latest-pages-articles[0-9]*.xml-p*.bz2", SUMS)
    assert urls == ["https://x/enwiki/latest/enwiki-latest-pages-articles1.xml-p1p41242.bz2",
                    "https://x/enwiki/latest/enwiki-latest-pages-articles2.xml-p41243p151573.bz2"]
    src = {"url": "x", "checksums_url": "sums.txt"}
    with pytest.raises(WikiGPTError, match="no checksum listed for missing.bz2"):
        expected_digest(src, "missing.bz2", SUMS)
    with pytest.raises(WikiGPTError, match="sums.txt:1: not a checksum line"):
        parse_sums("zz  file\n", "sums.txt")


# ---------------------------------------------------------------- download
def test_expand_source_turns_a_glob_into_every_listed_part(tmp_path):
    from gpt2core.data.download import expand_source

    (tmp_path / "sums.txt").write_text(SUMS)
    src = {"url": "https://x/enwiki-latest-pages-articles[0-9]*.xml-p*.bz2", "checksums_url": str(tmp_path / "sums.txt")}
    parts = expand_source(src)
    assert [p["url"].rsplit("/", 1)[1] for p in parts] == ["enwiki-latest-pages-articles1.xml-p1p41242.bz2",
                                                           "enwiki-latest-pages-articles2.xml-p41243p151573.bz2"]
    assert all(p["checksums_url"] == src["checksums_url"] for p in parts)
    assert expand_source({"url": "https://x/a.bz2"}) == [{"url": "https://x/a.bz2"}]
    with pytest.raises(WikiGPTError, match="needs checksums_url"):
        expand_source({"url": "https://x/*.bz2"})


def test_download_local_verifies_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"hello world\n" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    assert download({"url": f"file://{src}", "sha256": good}, tmp_path / "out" / "a.bin") == f"sha256:{good}"
    assert (tmp_path / "out" / "a.bin").read_bytes() == src.read_bytes()
    with pytest.raises(WikiGPTError, match="sha256 mismatch"):
        download({"url": str(src), "sha256": "0" * 64}, tmp_path / "out" / "b.bin")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin"]


def test_download_with_link_verifies_in_place_and_links_instead_of_copying(tmp_path, monkeypatch):
    """link: true puts a symbolic link to the absolute source path under the target's name, after its
    checksum is checked; a mismatch leaves nothing and the source untouched; a remote URL is refused."""
    src = tmp_path / "corpus" / "part.jsonl"
    src.parent.mkdir()
    src.write_bytes(b'{"text": "hello"}\n' * 100)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "out" / "part.jsonl"
    monkeypatch.chdir(tmp_path.parent)  # a relative path still links to the absolute one
    source = {"url": str(src.relative_to(tmp_path.parent)), "sha256": good, "link": True}
    assert download(source, dest) == f"sha256:{good}"
    assert dest.is_symlink() and dest.readlink() == src.resolve() and dest.read_bytes() == src.read_bytes()
    with pytest.raises(WikiGPTError, match="sha256 mismatch"):
        download({"url": str(src), "sha256": "0" * 64, "link": True}, tmp_path / "out" / "b.jsonl")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["part.jsonl"] and src.stat().st_size == 1800
    with pytest.raises(WikiGPTError, match="http://example.org/a.jsonl: link: true needs a local file"):
        download({"url": "http://example.org/a.jsonl", "link": True}, tmp_path / "out" / "c.jsonl")


def test_a_link_left_by_a_killed_linked_download_is_never_written_through(tmp_path):
    """A `link: true` download killed during its checksum leaves `.NAME.part` linking to the user's file; when
    the source is switched to a copy, the copy replaces the link instead of truncating the user's file."""
    src = tmp_path / "corpus.jsonl"
    payload = b'{"text": "hello"}\n' * 100
    src.write_bytes(payload)
    dest = tmp_path / "out" / "corpus.jsonl"
    dest.parent.mkdir()
    dest.with_name(".corpus.jsonl.part").symlink_to(src)
    download({"url": str(src)}, dest)
    assert src.read_bytes() == payload
    assert not dest.is_symlink() and dest.read_bytes() == payload


def test_link_carries_to_every_file_of_a_local_folder_and_a_remote_link_fails_at_parse_time(tmp_path):
    from gpt2core.data.download import expand_source

    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text('{"text": "x"}\n', encoding="utf-8")
    assert expand_source({"url": str(tmp_path), "link": True}) == [
        {"url": str(tmp_path / "a.jsonl"), "link": True}, {"url": str(tmp_path / "b.jsonl"), "link": True}]
    assert expand_source({"url": str(tmp_path)}) == [{"url": str(tmp_path / "a.jsonl")},
                                                     {"url": str(tmp_path / "b.jsonl")}]
    with pytest.raises(WikiGPTError, match="link: true needs a local file"):
        expand_source({"url": "https://example.org/enwiki-latest-pages-articles1.xml.bz2", "link": True})


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload with Range support; the first full request is cut off halfway."""

    payload = b""
    cut_first = True
    etag: str | None = None  # set: sent with every answer, and an If-Range naming another one gets it all
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        rng = self.headers.get("Range")
        if not self.path.endswith("sums.txt"):
            type(self).requests.append(rng)
        if rng and self.headers.get("If-Range") not in (None, self.etag):
            rng = None  # RFC 9110: the file changed, so the range is ignored
        data, status = self.payload, 200
        if self.path.endswith("sums.txt"):
            data = self.server.sums  # type: ignore[attr-defined]
        elif rng:
            start = int(rng.split("=")[1].rstrip("-"))
            if start >= len(self.payload):  # as servers answer a range past the end
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(self.payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, status = self.payload[start:], 206
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(self.payload) - 1}/{len(self.payload)}")
        if self.etag:
            self.send_header("ETag", self.etag)
        self.end_headers()
        if not rng and not self.path.endswith("sums.txt") and type(self).cut_first:
            type(self).cut_first = False
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_download_http_resumes_with_range_and_checks_sums_file(tmp_path):
    payload = bytes(range(256)) * 8192
    _RangeHandler.payload, _RangeHandler.cut_first = payload, True
    _RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.sums = f"{hashlib.sha1(payload).hexdigest()}  dump.bz2\n".encode()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        digest = download({"url": f"{base}/dump.bz2", "checksums_url": f"{base}/sums.txt"}, tmp_path / "dump.bz2")
    finally:
        server.shutdown()
    assert (tmp_path / "dump.bz2").read_bytes() == payload
    assert digest == f"sha1:{hashlib.sha1(payload).hexdigest()}"
    assert _RangeHandler.requests == [None, f"bytes={len(payload) // 2}-"]


def test_a_whole_part_left_by_a_download_killed_while_verifying_is_not_fetched_again(tmp_path):
    """The server answers 416 with the file's size to a range past the end: a part of exactly that size is
    verified as it is (a 20 GB dump part is not fetched again); a longer, stale part is fetched afresh."""
    payload = bytes(range(256)) * 64
    _RangeHandler.payload, _RangeHandler.cut_first = payload, False
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/dump.bz2"
    sha = hashlib.sha256(payload).hexdigest()
    try:
        for leftover, expect in ((payload, [f"bytes={len(payload)}-"]),
                                 (payload + b"stale", [f"bytes={len(payload) + 5}-", None])):
            _RangeHandler.requests = []
            (tmp_path / ".dump.bz2.part").write_bytes(leftover)
            (tmp_path / "dump.bz2").unlink(missing_ok=True)
            assert download({"url": url, "sha256": sha}, tmp_path / "dump.bz2") == f"sha256:{sha}"
            assert (tmp_path / "dump.bz2").read_bytes() == payload and _RangeHandler.requests == expect
    finally:
        server.shutdown()
        _RangeHandler.cut_first = True


def test_a_part_of_a_file_changed_on_the_server_is_fetched_whole_not_spliced(tmp_path):
    """The ETag of the answer that started a part is kept beside it and sent as If-Range on resume: the same
    file resumes (206), a changed one (a republished `latest` dump) comes back whole, even with no checksum."""
    payload = bytes(range(256)) * 64
    _RangeHandler.payload, _RangeHandler.etag, _RangeHandler.requests = payload, '"v2"', []
    _RangeHandler.cut_first = True
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/dump.bz2"
    try:
        download({"url": url}, tmp_path / "a" / "dump.bz2")  # cut halfway, then resumed under the same ETag
        assert _RangeHandler.requests == [None, f"bytes={len(payload) // 2}-"]
        assert (tmp_path / "a" / "dump.bz2").read_bytes() == payload
        assert [p.name for p in (tmp_path / "a").iterdir()] == ["dump.bz2"]  # validator gone with the part
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / ".dump.bz2.part").write_bytes(b"old version " * 100)
        (tmp_path / "b" / ".dump.bz2.part.validator").write_text('"v1"\n')
        download({"url": url}, tmp_path / "b" / "dump.bz2")
        assert (tmp_path / "b" / "dump.bz2").read_bytes() == payload
    finally:
        server.shutdown()
        _RangeHandler.etag, _RangeHandler.cut_first = None, True


@pytest.fixture
def file_server():
    with serve_files({}) as served:
        yield served


def test_a_remote_checksum_list_is_read_once_and_kept_beside_the_parts(tmp_path, file_server):
    """Expanding a dump glob reads the remote list once; later expansions (DAG builds) work offline, and the
    downloads check the parts against the kept copy; a stale copy is named in the mismatch error."""
    from gpt2core.data.download import expand_source, kept_list_path

    server, base = file_server
    parts = {f"/dump/wiki-articles{i}.xml.bz2": bytes([i]) * 5000 for i in (1, 2)}
    sums = "".join(f"{hashlib.sha1(v).hexdigest()}  {k.rsplit('/', 1)[1]}\n" for k, v in parts.items())
    server.files.update(parts, **{"/dump/sha1sums.txt": sums.encode()})
    src = {"url": f"{base}/dump/wiki-articles[0-9]*.xml.bz2", "checksums_url": f"{base}/dump/sha1sums.txt"}
    folder = tmp_path / "downloads" / "enwiki"
    first = expand_source(src, folder)
    assert [p["url"] for p in first] == [base + k for k in parts]
    assert expand_source(src, folder) == first and server.hits["/dump/sha1sums.txt"] == 1
    kept = kept_list_path(src["checksums_url"], folder)
    assert kept.parent == folder and kept.read_text() == sums
    assert download(first[0], folder / "wiki-articles1.xml.bz2") == f"sha1:{hashlib.sha1(parts['/dump/wiki-articles1.xml.bz2']).hexdigest()}"
    assert server.hits["/dump/sha1sums.txt"] == 1
    kept.write_text(sums.replace(hashlib.sha1(parts["/dump/wiki-articles2.xml.bz2"]).hexdigest(), "0" * 40))
    with pytest.raises(WikiGPTError, match=r"sha1 mismatch.*kept copy of .*sha1sums.txt.*delete that copy"):
        download(first[1], folder / "wiki-articles2.xml.bz2")
    assert not (folder / "wiki-articles2.xml.bz2").exists()
    server.shutdown()
    assert expand_source(src, folder) == first  # offline: the kept copy


def test_a_checksum_list_that_is_not_one_is_an_error_and_not_kept(tmp_path, file_server):
    from gpt2core.data.download import read_checksums

    server, base = file_server
    server.files["/sums.txt"] = b"<html><body>Service unavailable</body></html>\n"
    with pytest.raises(WikiGPTError, match=r"sums.txt:1: not a checksum line"):
        read_checksums(f"{base}/sums.txt", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_unreachable_url_is_one_line_error(tmp_path):
    with pytest.raises(WikiGPTError, match=r"cannot download http://127\.0\.0\.1:9/x\.bz2"):
        download({"url": "http://127.0.0.1:9/x.bz2"}, tmp_path / "x.bz2")
    assert not (tmp_path / "x.bz2").exists()


# ---------------------------------------------------------------- presplit blocks
def _write_jsonl(path: Path, docs: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")


def test_blocks_give_every_line_to_exactly_one_shard(tmp_path):
    docs = [{"id": str(i), "title": f"T{i}", "url": "", "text": "word " * (i * 37 % 3000)} for i in range(120)]
    _write_jsonl(tmp_path / "p1" / "AA" / "wiki_00", docs[:70])
    _write_jsonl(tmp_path / "p2" / "AA" / "wiki_00", docs[70:])
    parts = [("p1", tmp_path / "p1"), ("p2", tmp_path / "p2")]
    assert (tmp_path / "p1" / "AA" / "wiki_00").stat().st_size > 3 * BLOCK
    for shards in (1, 2, 3, 7):
        seen = []
        for k in range(shards):
            for path, start, end in shard_blocks(parts, k, shards):
                seen += [json.loads(line)["id"] for _, line in read_block(path, start, end)]
        assert sorted(seen, key=int) == [d["id"] for d in docs]


def test_blocks_inside_a_long_line_read_only_themselves(tmp_path, monkeypatch):
    """A line spanning 40 blocks is read once, not once per block it spans (that was quadratic)."""
    from gpt2core.data import presplit

    f = tmp_path / "p" / "AA" / "wiki_00"
    docs = [{"id": "1", "title": "A", "text": "short"}, {"id": "2", "title": "Giant", "text": "x" * (40 * BLOCK)},
            {"id": "3", "title": "C", "text": "after"}]
    _write_jsonl(f, docs)
    read = []

    class Counting:
        def __init__(self, *args):
            self.fh = open(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def read(self, n=-1):
            data = self.fh.read(n)
            read.append(len(data))
            return data

        def readline(self, size=-1):
            data = self.fh.readline(size)
            read.append(len(data))
            return data

    monkeypatch.setattr(presplit, "open", Counting, raising=False)
    seen = [json.loads(line)["id"] for path, start, end in shard_blocks([("p", tmp_path / "p")], 0, 1)
            for _, line in read_block(path, start, end)]
    assert seen == ["1", "2", "3"]
    # every byte went through the counter at least once (so the bound above is about real reads), and the
    # whole file was not read once per block the line spans
    assert f.stat().st_size <= sum(read) < 3 * f.stat().st_size, sum(read) / f.stat().st_size


@pytest.mark.parametrize("bad, message", [
    (b'{"id": "2", "title": "B", "text": "oops"\n', r"wiki_00:2: malformed JSON"),
    (b'{"id": "2", "title": "B", "text": "caf\xe9"}\n', r"wiki_00:2: invalid UTF-8"),
    (b'{"id": 2, "title": "B", "text": "x"}\n', r"wiki_00:2: not an article object"),
])
def test_presplit_bad_line_names_file_and_line(tmp_path, bad, message):
    f = tmp_path / "p" / "AA" / "wiki_00"
    f.parent.mkdir(parents=True)
    f.write_bytes(json.dumps({"id": "1", "title": "A", "text": "fine " * 100}).encode() + b"\n" + bad)
    out = tmp_path / "out.parquet"
    with pytest.raises(WikiGPTError, match=message):
        presplit_shard([("p", tmp_path / "p")], out, 0, 1)
    assert not out.exists() and list(tmp_path.glob(".out.parquet*")) == []


def test_presplit_drops_and_counts(tmp_path):
    docs = [{"id": "1", "title": "Keep", "text": "A long enough text. " * 20},
            {"id": "2", "title": "Short", "text": "Tiny."},
            {"id": "3", "title": "Empty", "text": "  "},
            {"id": "4", "title": "Robert Boulter", "text": "Listed in the eval file. " * 20}]
    _write_jsonl(tmp_path / "p" / "AA" / "wiki_00", docs)
    titles = tmp_path / "titles.txt"
    titles.write_text("Robert Boulter\nSomething else\n", encoding="utf-8")
    stats = presplit_shard([("p", tmp_path / "p")], tmp_path / "s.parquet", 0, 1, True, 50, [titles])
    assert stats["documents"] == 1
    assert stats["dropped"] == {"decontaminated": 1, "empty": 1, "short": 1}
    assert shard_stats(tmp_path / "s.parquet") == stats


# ---------------------------------------------------------------- splits
def test_split_rule_depends_only_on_id_and_seed():
    bounds = split_bounds([949, 50, 1])
    got = [split_of(str(i), 1234, bounds) for i in range(20000)]
    assert got == [split_of(str(i), 1234, bounds) for i in range(20000)]
    frac = np.bincount(got, minlength=3) / len(got)
    assert abs(frac[0] - 0.949) < 0.01 and abs(frac[1] - 0.05) < 0.01 and frac[2] < 0.005
    assert got != [split_of(str(i), 1, bounds) for i in range(20000)]
    with pytest.raises(WikiGPTError):
        split_bounds([0, 0, 0])
    # pinned: the same in every process, Python and machine (a per-process hash would pass the lines above)
    even = split_bounds([1, 1, 1])
    assert [split_of(f"wiki:{i}", 7, even) for i in range(30)] == [
        1, 0, 1, 1, 2, 0, 2, 1, 1, 2, 2, 0, 0, 1, 2, 0, 2, 0, 0, 1, 2, 2, 2, 0, 0, 2, 1, 1, 1, 1]
    assert [i for i in range(60) if got[i]] == [4, 49]


# ---------------------------------------------------------------- tokenizers
@pytest.fixture(scope="module")
def gpt2_json(tmp_path_factory):
    enc = shared_file(f"{GPT2}/encoder.json")
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    info = build_gpt2(enc, shared_file(f"{GPT2}/vocab.bpe"), out)
    assert info == {"vocab_size": 50257, "merges": 50000, "eod_id": 50256, "openai_gpt2_files": True}
    return out


def test_gpt2_tokenizer_loads_everywhere_and_tiktoken_matches(gpt2_json):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    text = "The history of Anarchism, 1840s–1930s: Proudhon's «property is theft»! 中文。 "
    hf = Tokenizer.from_file(str(gpt2_json))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(gpt2_json))
    enc = load_encoder(gpt2_json)
    assert enc.backend == "tiktoken" and enc.eod_id == 50256 and enc.vocab_size == 50257
    ids = enc.encode(text)
    assert ids == hf.encode(text).ids == fast(text)["input_ids"]
    assert enc.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert enc.decode(ids + [enc.eod_id]) == text + "<|endoftext|>"
    assert load_encoder(gpt2_json, prefer_tiktoken=False).encode_batch([text]) == [ids]


def test_recorded_check_is_used_only_for_the_same_bytes(gpt2_json, tmp_path):
    from gpt2core.data.encoder import CHECK_FILE, write_check

    tok = tmp_path / "tokenizer.json"
    tok.write_bytes(gpt2_json.read_bytes())
    assert write_check(tok, tmp_path / CHECK_FILE)["tiktoken_agrees"] is True
    assert load_encoder(tok).backend == "tiktoken"
    verdict = json.loads((tmp_path / CHECK_FILE).read_text())
    (tmp_path / CHECK_FILE).write_text(json.dumps({**verdict, "tiktoken_agrees": False}))
    assert load_encoder(tok).backend == "tokenizers"  # the recorded verdict is obeyed
    (tmp_path / CHECK_FILE).write_text(json.dumps({"tokenizer_sha256": "0" * 64, "tiktoken_agrees": False}))
    assert load_encoder(tok).backend == "tiktoken"  # a verdict for other bytes is ignored: probe again


def test_trained_bpe_tiktoken_agrees_with_tokenizers(tmp_path):
    text_docs = [{"id": str(i), "title": str(i), "text": f"Document {i} talks about bread, tea and rain. " * 30}
                 for i in range(40)]
    _write_jsonl(tmp_path / "p" / "AA" / "wiki_00", text_docs)
    presplit_shard([("p", tmp_path / "p")], tmp_path / "s.parquet", 0, 1)
    info = train_bpe([[str(tmp_path / "s.parquet")]], tmp_path / "tok.json", 300, 2, 10**6)
    assert info["vocab_size"] == 300 and info["eod_id"] == 0
    enc = load_encoder(tmp_path / "tok.json")
    assert enc.backend == "tiktoken"
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tok.json"))
    assert fast("bread, tea and rain")["input_ids"] == enc.encode("bread, tea and rain")
    text = json.loads((tmp_path / "p/AA/wiki_00").read_text().splitlines()[0])["text"]  # one line per paragraph
    for dtype, np_dtype in (("uint16", "<u2"), ("uint32", "<u4")):
        out = tmp_path / dtype
        stats = tokenize_shard(tmp_path / "s.parquet", tmp_path / "tok.json", out, [1, 1, 1], 7, dtype)
        assert sum(s["documents"] for s in stats["splits"].values()) == 40 and stats["encoder"] == "tiktoken"
        decoded = [enc.decode(np.fromfile(out / f"{s}.bin", dtype=np_dtype).tolist()) for s in ("train", "valid", "test")]
        assert sum(d.count("<|endoftext|>") for d in decoded) == 40
        assert (out / "train.bin").stat().st_size == stats["splits"]["train"]["tokens"] * int(np_dtype[-1])
    assert text.startswith("Document 0 talks") and any(
        "Document 0 talks about bread, tea and rain.\nDocument 0 talks" in d for d in decoded)  # sentence-split


def test_gather_refuses_shards_of_another_tokenizer_with_the_same_eod_id(tmp_path):
    """Two trained BPEs share EOD id 0: the tokenizer's hash recorded in each shard's stats tells them apart."""
    from gpt2core.data.manifest import gather

    docs = [{"id": str(i), "title": str(i), "text": f"Document {i} talks about bread, tea and rain. " * 30}
            for i in range(40)]
    _write_jsonl(tmp_path / "p" / "AA" / "wiki_00", docs)
    presplit_shard([("p", tmp_path / "p")], tmp_path / "s.parquet", 0, 1)
    for name, size in (("a.json", 300), ("b.json", 320)):
        assert train_bpe([[str(tmp_path / "s.parquet")]], tmp_path / name, size, 2, 10**6)["eod_id"] == 0
    tokenize_shard(tmp_path / "s.parquet", tmp_path / "a.json", tmp_path / "c" / "00000", [1, 1, 1], 7)
    gather([tmp_path / "c" / "00000"], tmp_path / "a.json", "uint16", tmp_path / "m.json")
    with pytest.raises(WikiGPTError, match=r"c/00000/stats.json: made with another dtype or tokenizer than .*b.json"):
        gather([tmp_path / "c" / "00000"], tmp_path / "b.json", "uint16", tmp_path / "m2.json")
    assert not (tmp_path / "m2.json").exists()


def test_uint16_refuses_a_large_vocabulary(gpt2_json, tmp_path):
    from gpt2core.data.shards import check_dtype

    check_dtype(65536, "uint16", "t")
    with pytest.raises(WikiGPTError, match="does not fit data.dtype uint16"):
        check_dtype(65537, "uint16", "t")
    check_dtype(70000, "uint32", "t")
