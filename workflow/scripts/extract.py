"""Snakemake script for rule extract (see gpt2core.data.extract)."""

import json

from gpt2core.data.extract import extract_dump
from gpt2core.errors import run_cli


def main() -> None:
    counts = extract_dump(snakemake.input[0], snakemake.output[0], snakemake.threads, snakemake.log[0])
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(json.dumps(counts) + "\n")


run_cli(main, snakemake.log[0])
