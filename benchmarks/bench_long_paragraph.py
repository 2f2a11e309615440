"""Peak memory of presplit on one page that is a single long paragraph (issue 19, item 4).

Writes one extracted article whose text is --mb MB of sentences with no newline, runs presplit on it in a
fresh process, and prints its peak RSS against the anchors:
  goal       1 GB (1024 MiB) for a 200 MB paragraph                        anchor: peak / 1 GB <= 1.0
  input      peak RSS / the article's size (the JSON line)                  for scale
  old        the same page with no paragraph cut (limits.max_paragraph_chars off), the old behaviour; run on
             --old-mb (default 20) MB only, since it needs ~25 bytes per character (5.4 GB at 200 MB)

    python benchmarks/bench_long_paragraph.py [--mb 200] [--old-mb 20] [--workdir /tmp/bench_long_paragraph]
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


def peak_rss(workdir: Path, mb: int, max_paragraph_chars: int) -> tuple[int, int, int]:
    """(peak RSS bytes, input bytes, paragraph cuts) of presplit on a fresh `mb` MB page."""
    extract = workdir / f"extract-{mb}"
    shutil.rmtree(extract, ignore_errors=True)
    size = write_page(extract, mb)
    ctx = mp.get_context("spawn")  # a fresh interpreter: no memory of this one's
    queue = ctx.Queue()
    proc = ctx.Process(target=_presplit, args=(str(extract), str(workdir / f"out-{mb}.parquet"),
                                               max_paragraph_chars, queue))
    proc.start()
    rss, cuts = queue.get()
    proc.join()
    shutil.rmtree(extract, ignore_errors=True)
    return rss, size, cuts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--old-mb", type=int, default=20)
    parser.add_argument("--workdir", default="/tmp/bench_long_paragraph")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    from gpt2core.data.sentences import MAX_PARAGRAPH_CHARS

    gib = 1 << 30
    rss, size, cuts = peak_rss(workdir, args.mb, MAX_PARAGRAPH_CHARS)
    print(f"presplit, {args.mb} MB one-paragraph page: peak RSS {rss / 2**20:.0f} MiB "
          f"({cuts} paragraph cuts)")
    print(f"  goal:  peak / 1 GiB = {rss / gib:.2f}  (anchor: <= 1.0) {'OK' if rss <= gib else 'OVER'}")
    print(f"  input: peak / input size = {rss / size:.2f}")
    if args.old_mb:
        old_rss, old_size, _ = peak_rss(workdir, args.old_mb, 10 ** 12)
        print(f"old behaviour (no cut), {args.old_mb} MB page: peak RSS {old_rss / 2**20:.0f} MiB = "
              f"{old_rss / old_size:.1f} x its input; scaled to {args.mb} MB: ~{old_rss / old_size * size / gib:.1f} GiB")
    shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
