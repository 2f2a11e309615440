"""Snakemake script for rule gather (see gpt2core.data.manifest)."""

import json
import os

from gpt2core.data.manifest import gather
from gpt2core.errors import run_cli


def main() -> None:
    manifest = gather([os.path.dirname(p) for p in snakemake.input.stats], snakemake.input.tokenizer,
                      snakemake.params.dtype, snakemake.output[0])
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        summary = {s: (v["documents"], v["tokens"]) for s, v in manifest["splits"].items()}
        log.write(json.dumps({"splits (documents, tokens)": summary, "dropped": manifest["dropped"]}) + "\n")


run_cli(main, snakemake.log[0])
