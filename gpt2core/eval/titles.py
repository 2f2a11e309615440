"""Article titles of a WikiText file, for decontaminating the training corpus.

WikiText marks each article with a ` = Title = ` line (sections are ` = = Section = = `). The title text is
tokenized like the body, so it is detokenized with the reference's rules plus the contraction split that
WikiText applies and the reference leaves alone (` 't`, ` 're`, ...), giving the Wikipedia title:
` = Tropical Storm Allison ( 1989 ) = ` -> `Tropical Storm Allison (1989)`,
` = Ise @-@ class battleship = ` -> `Ise-class battleship`, ` = Kirby 's Block Ball = ` -> `Kirby's Block Ball`.
A heading counts only when the next line is blank, as after every real title: WikiText-103's test file also
holds two equation fragments that look like headings (` = 1 henry and capacitance C = `, followed by text).
Titles holding `<unk>` cannot equal any real title and are left out (counted in the log). Presplit drops a
training document whose title equals a listed title, exactly.
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.eval.detok import wikitext_detokenize
from gpt2core.fsutil import atomic_path

# A level-1 heading: " = X = " where X does not start or end with "=" (that would be a section).
_HEADING = re.compile(r"^ = (?!=)(.*?)(?<!=) = $")
_CONTRACTION = re.compile(r" '(s|t|re|ve|ll|d|m)\b", re.IGNORECASE)
UNK = "<unk>"


def heading_title(line: str) -> str | None:
    """The raw (still tokenized) title of a ` = Title = ` line, or None for any other line."""
    match = _HEADING.match(line.rstrip("\n"))
    if match is None or not match.group(1).strip():
        return None
    return match.group(1)


def detokenize_title(raw: str) -> str:
    """WikiText title tokens -> the Wikipedia article title."""
    title = wikitext_detokenize(f" {raw} ").strip()
    title = _CONTRACTION.sub(r"'\1", title)
    return " ".join(title.split())


def extract_titles(path: str | Path) -> tuple[list[str], int]:
    """Unique titles in file order, and the number of headings skipped because they hold `<unk>`."""
    path = Path(path)
    titles: dict[str, None] = {}
    skipped = 0
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
        for line, following in zip(lines, lines[1:] + [""], strict=True):
            raw = heading_title(line)
            if raw is None or following.strip():
                continue
            if UNK in raw:
                skipped += 1
                continue
            titles.setdefault(detokenize_title(raw), None)
    except UnicodeDecodeError as exc:
        raise WikiGPTError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise WikiGPTError(f"{path}: cannot read ({exc.strerror})") from None
    if not titles and not skipped:
        raise WikiGPTError(f"{path}: no ' = Title = ' lines (not a WikiText file?)")
    return list(titles), skipped


def write_titles(eval_file: str | Path, out_path: str | Path, log_path: str | Path | None = None) -> int:
    """Write one title per line (UTF-8) atomically; returns the number of titles."""
    titles, skipped = extract_titles(eval_file)
    with atomic_path(out_path) as tmp:
        tmp.write_text("".join(f"{t}\n" for t in titles), encoding="utf-8")
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{eval_file}: {len(titles)} titles written to {out_path}; "
                      f"{skipped} headings with {UNK} skipped\n")
    return len(titles)
