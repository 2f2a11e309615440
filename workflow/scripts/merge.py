"""rule merge: the final training checkpoint -> results/model/ (Hugging Face GPT-2 layout)."""

from pathlib import Path

from gpt2core.errors import run_cli
from gpt2core.export.run import export_run

run_cli(lambda: export_run(snakemake.input.done, Path(snakemake.output.config).parent,
                           snakemake.input.tokenizer), snakemake.log[0])
