"""Dynamic loss scaling for fp16 (the reference's scheme, torch.amp.GradScaler's defaults): an overflowing
step is skipped and halves the scale (never below 1); `window` clean steps double it; too many consecutive
skips is an error. The decision takes a `found_inf` flag so a parallel run can agree on it across ranks
before calling `update`."""

from __future__ import annotations

from gpt2core.errors import WikiGPTError


class DynamicLossScaler:
    def __init__(self, init_scale: float = 65536.0, window: int = 2000, max_skipped: int = 50,
                 enabled: bool = True) -> None:
        self.enabled = enabled
        self.scale = float(init_scale) if enabled else 1.0
        self.window, self.max_skipped = window, max_skipped
        self.good_steps = 0
        self.skipped_in_a_row = 0

    def update(self, found_inf: bool, step: int) -> bool:
        """Record one step's outcome; True means skip the optimizer step (and the LR advance)."""
        if not self.enabled:
            return False
        if found_inf:
            self.scale = max(1.0, self.scale / 2.0)
            self.good_steps = 0
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row >= self.max_skipped:
                raise WikiGPTError(f"fp16: {self.skipped_in_a_row} consecutive overflowing steps up to step "
                                   f"{step} (loss scale {self.scale:g}); lower the lr or use bf16")
            return True
        self.skipped_in_a_row = 0
        self.good_steps += 1
        if self.good_steps >= self.window:
            self.scale *= 2.0
            self.good_steps = 0
        return False

    def state_dict(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped_in_a_row": self.skipped_in_a_row}

    def load_state_dict(self, state: dict) -> None:
        self.scale = float(state["scale"])
        self.good_steps = int(state["good_steps"])
        self.skipped_in_a_row = int(state["skipped_in_a_row"])
