"""rule generate: results/model/ -> results/samples.jsonl."""

from pathlib import Path

from gpt2core.errors import run_cli
from gpt2core.generate import write_samples

run_cli(lambda: write_samples(Path(snakemake.input.config).parent, snakemake.output[0],
                              snakemake.params.prompts, snakemake.params.prompts_file or None,
                              snakemake.params.settings), snakemake.log[0])
