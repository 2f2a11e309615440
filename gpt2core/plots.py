"""Figures from a training run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from gpt2core.errors import WikiGPTError
from gpt2core.fsutil import atomic_path
from gpt2core.training.metrics import read_metrics


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path, title: str = "") -> None:
    """Train loss (each step) and valid loss (each eval) against tokens seen, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = read_metrics(metrics_path)
    if not lines:
        raise WikiGPTError(f"{metrics_path}: no metrics lines to plot")
    train = [(m["tokens"], m["loss"]) for m in lines if not m.get("skipped")]
    valid = [(m["tokens"], m["valid_loss"]) for m in lines if m.get("valid_loss") is not None]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(*zip(*train, strict=True), lw=1, label="train")
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", lw=1.5, label="valid")
    ax.set_xlabel("tokens")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
