"""One exception type for problems the user can fix (bad input, bad config), and a runner that turns
it into the one-line message and non-zero exit that every stage promises."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WikiGPTError(Exception):
    """A user-facing error: its message is one line naming the file (and line or page) at fault."""


def run_cli(fn: Callable[[], T], log_path: str | Path | None = None) -> T:
    """Run `fn`; on WikiGPTError print `error: <message>` to stderr (and the log) and exit 1.

    Other exceptions keep their traceback: they are bugs, not user errors.
    """
    try:
        return fn()
    except WikiGPTError as exc:
        line = f"error: {' '.join(str(exc).split())}"
        if log_path is not None:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line + "\n")
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
