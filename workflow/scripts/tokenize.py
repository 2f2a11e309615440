"""Snakemake script for rule tokenize (see gpt2core.data.shards)."""

import json
import os

from gpt2core.data.shards import tokenize_shard
from gpt2core.data.split_plan import read_moved
from gpt2core.errors import run_cli


def main() -> None:
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        stats = tokenize_shard(
            parquet=snakemake.input.parquet,
            tokenizer_json=snakemake.input.tokenizer,
            outdir=os.path.dirname(snakemake.output[0]),
            split=list(snakemake.params.split),
            seed=snakemake.params.seed,
            dtype=snakemake.params.dtype,
            threads=snakemake.threads,
            log=log,
            moved=read_moved(snakemake.input.plan),
        )
        log.write(json.dumps(stats) + "\n")


run_cli(main, snakemake.log[0])
