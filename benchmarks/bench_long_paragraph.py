"""Peak memory of presplit and tokenizer training on one page that is a single long paragraph (issue 19,
item 4).

Writes one extracted article whose text is --mb MB of sentences with no newline, runs presplit on it in a
fresh process, then (with --tokenizer) BPE training on the shard, and prints peak RSS against the anchors:
  goal       1 GB (1024 MiB) for a 200 MB paragraph                        anchor: peak / 1 GB <= 1.0
  input      peak RSS / the article's size (the JSON line)                  for scale
  old        the same page with no paragraph cut (limits.max_paragraph_chars off) or the text given to the
             trainer whole, the old behaviour; run on --old-mb (default 20) MB only, since it needs ~25
             bytes per character (5.4 GB at 200 MB)

    python benchmarks/bench_long_paragraph.py [--mb 200] [--old-mb 20] [--tokenizer] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import sys
from pathlib import Path

SENTENCE = "The river keeps running past the old mill and nobody remembers who built it first. "


def write_page(folder: Path, mb: int) -> int:
    """One article of `mb` MB of text in one paragraph, as WikiExtractor writes it; returns the line's bytes."""
    text = SENTENCE * (mb * 1_000_000 // len(SENTENCE))
    line = json.dumps({"id": "1", "title": "Long", "url": "", "text": text}) + "\n"
    (folder / "AA").mkdir(parents=True, exist_ok=True)
    (folder / "AA" / "wiki_00").write_text(line, encoding="utf-8")
    return len(line)


def _presplit(extract: str, out: str, max_paragraph_chars: int, queue: mp.Queue) -> None:
    from gpt2core.data.presplit import presplit_shard

    stats = presplit_shard([("p", extract)], out, 0, 1, max_paragraph_chars=max_paragraph_chars)
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, stats["paragraph_cuts"]))


def _train(shard: str, out: str, piece_chars: int, queue: mp.Queue) -> None:
    from gpt2core.data.tokenizer import train_bpe

    train_bpe([[shard]], out, vocab_size=1000, min_frequency=2, sample_bytes=10 ** 10, piece_chars=piece_chars)
    queue.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 0))


def _fresh(target, *args) -> tuple[int, int]:
    """`target`'s (peak RSS, count) from a fresh interpreter: no memory of this one's."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    got = queue.get()
    proc.join()
    return got


def peak_rss(workdir: Path, mb: int, max_paragraph_chars: int, train_piece_chars: int | None = None
             ) -> tuple[int, int, int, int | None]:
    """(presplit peak RSS, input bytes, paragraph cuts, tokenizer training peak RSS or None) on a fresh
    `mb` MB page."""
    extract = workdir / f"extract-{mb}"
    shutil.rmtree(extract, ignore_errors=True)
    size = write_page(extract, mb)
    shard = workdir / f"out-{mb}.parquet"
    rss, cuts = _fresh(_presplit, str(extract), str(shard), max_paragraph_chars)
    shutil.rmtree(extract, ignore_errors=True)
    train_rss = None
    if train_piece_chars is not None:
        train_rss, _ = _fresh(_train, str(shard), str(workdir / "tokenizer.json"), train_piece_chars)
    return rss, size, cuts, train_rss


def report(what: str, rss: int, size: int) -> None:
    gib = 1 << 30
    print(f"{what}: peak RSS {rss / 2**20:.0f} MiB")
    print(f"  goal:  peak / 1 GiB = {rss / gib:.2f}  (anchor: <= 1.0) {'OK' if rss <= gib else 'OVER'}")
    print(f"  input: peak / input size = {rss / size:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--old-mb", type=int, default=20)
    parser.add_argument("--tokenizer", action="store_true", help="also BPE training on the presplit shard")
    parser.add_argument("--workdir", default="/tmp/bench_long_paragraph")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    from gpt2core.data.sentences import MAX_PARAGRAPH_CHARS
    from gpt2core.data.tokenizer import TRAIN_PIECE_CHARS

    gib = 1 << 30
    whole = 10 ** 12
    rss, size, cuts, train = peak_rss(workdir, args.mb, MAX_PARAGRAPH_CHARS,
                                      TRAIN_PIECE_CHARS if args.tokenizer else None)
    report(f"presplit, {args.mb} MB one-paragraph page ({cuts} paragraph cuts)", rss, size)
    if train is not None:
        report(f"tokenizer training on its shard (pieces of {TRAIN_PIECE_CHARS} chars)", train, size)
    if args.old_mb:
        old, old_size, _, old_train = peak_rss(workdir, args.old_mb, whole, whole if args.tokenizer else None)
        for what, peak in (("presplit, no cut", old), ("tokenizer training, whole texts", old_train)):
            if peak is not None:
                print(f"old behaviour ({what}), {args.old_mb} MB page: peak RSS {peak / 2**20:.0f} MiB = "
                      f"{peak / old_size:.1f} x its input; scaled to {args.mb} MB: ~{peak / old_size * size / gib:.1f} GiB")
    shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
