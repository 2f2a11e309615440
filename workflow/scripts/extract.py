"""Snakemake script for rule extract (see gpt2core.data.sources.extract_part)."""

import json

from gpt2core.data.sources import extract_part
from gpt2core.errors import run_cli


def main() -> None:
    spec = dict(snakemake.params.spec)
    counts = extract_part(spec["kind"], snakemake.input[0], snakemake.output[0], snakemake.wildcards.part,
                          snakemake.threads, snakemake.log[0], spec.get("text_field", "text"),
                          snakemake.params.get("limits"))
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(json.dumps(counts, ensure_ascii=False) + "\n")


run_cli(main, snakemake.log[0])
