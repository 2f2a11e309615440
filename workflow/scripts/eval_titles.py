"""rule eval_titles: the WikiText eval file -> data/eval/wiki103_titles.txt (one article title a line)."""

from gpt2core.errors import run_cli
from gpt2core.eval.titles import write_titles

run_cli(lambda: write_titles(snakemake.input[0], snakemake.output[0], snakemake.log[0]), snakemake.log[0])
