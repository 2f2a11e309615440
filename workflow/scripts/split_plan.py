"""Snakemake script for rule split_plan (see gpt2core.data.split_plan)."""

import json
import sys

from gpt2core.data.split_plan import write_plan
from gpt2core.errors import run_cli


def main() -> None:
    plan = write_plan(list(snakemake.input), snakemake.params.seed, list(snakemake.params.split),
                      snakemake.output[0], snakemake.wildcards.corpus)
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(json.dumps(plan, ensure_ascii=False) + "\n")
        if plan["warning"]:
            log.write(plan["warning"] + "\n")
    if plan["warning"]:
        print(plan["warning"], file=sys.stderr)


run_cli(main, snakemake.log[0])
