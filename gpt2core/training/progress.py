"""A few short progress lines for the console while training runs (`--progress`).

The tqdm bar and every message go to stderr, which `rule train` sends to logs/train/train.log; a run of hours
would leave the console silent. These lines go to stdout, which the rule leaves on the console: one when the
first step is done, then at every tenth of the run or every 30 s, whichever comes first, and one at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

EVERY_S = 30.0  # at most this long between two lines
EVERY_FRACTION = 0.1  # and a line at every tenth of the run


def eta_text(seconds: float) -> str:
    """`1:02:03` / `4:05`: hours only when there are any."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ConsoleProgress:
    """Writes `train: step 150/300 (50%), loss 5.284, 10,827 tokens/s, ETA 0:15` lines to `stream`."""

    def __init__(self, total: int, start: int, stream: TextIO | None, clock: Callable[[], float] = time.monotonic,
                 every_s: float = EVERY_S, every_fraction: float = EVERY_FRACTION) -> None:
        self.total, self.start, self.stream, self.clock = total, start, stream, clock
        self.every_s, self.step_gap = every_s, max(1, round(total * every_fraction))
        self.t0 = clock()
        self.last_t: float | None = None
        self.last_step = start

    def update(self, step: int, record: dict) -> None:
        """After iteration `step` (1-based) with its metrics line: write a line when one is due."""
        now = self.clock()
        due = (self.last_t is None or step >= self.total or now - self.last_t >= self.every_s
               or step // self.step_gap > self.last_step // self.step_gap)
        if due:
            self.write(step, record, now)

    def write(self, step: int, record: dict, now: float) -> None:
        done = step - self.start
        rate = done / (now - self.t0) if now > self.t0 else 0.0
        eta = eta_text((self.total - step) / rate) if rate > 0 else "?"
        line = (f"train: step {step:,}/{self.total:,} ({100 * step // self.total}%), loss {record['loss']:.3f}, "
                f"{record.get('tokens_per_s', 0):,.0f} tokens/s, ETA {eta}")
        if "valid_loss" in record:
            line += f", valid loss {record['valid_loss']:.3f}"
        self.last_t, self.last_step = now, step
        if self.stream is None:
            return
        try:
            print(line, file=self.stream, flush=True)
        except OSError:  # the console went away (a closed pipe, a lost terminal): training goes on, silent
            self.stream = None
