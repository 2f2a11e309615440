"""rule loss_curve: results/train/metrics.jsonl -> results/loss_curve.png."""

from gpt2core.errors import run_cli
from gpt2core.plots import plot_loss_curve

run_cli(lambda: plot_loss_curve(snakemake.input.metrics, snakemake.output[0],
                                f"run {snakemake.params.run_name}"), snakemake.log[0])
