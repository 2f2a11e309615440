"""Snakemake script for rule gather (see gpt2core.data.manifest)."""

import json
import os
import sys

from gpt2core.data.manifest import gather
from gpt2core.errors import run_cli


def main() -> None:
    manifest = gather([os.path.dirname(p) for p in snakemake.input.stats], snakemake.input.tokenizer,
                      snakemake.params.dtype, snakemake.output[0], list(snakemake.params.corpora),
                      snakemake.input.tokenizer_stats, list(snakemake.input.plans))
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        summary = {s: (v["documents"], v["tokens"]) for s, v in manifest["splits"].items()}
        log.write(json.dumps({"splits (documents, tokens)": summary, "dropped": manifest["dropped"]}) + "\n")
        for c in manifest["corpora"]:
            per = {s: (v["documents"], v["tokens"]) for s, v in c["splits"].items()}
            log.write(json.dumps({"corpus": c["name"], "lang": c["lang"], "weight": c["weight"],
                                  "splits (documents, tokens)": per, "markup left": c["markup"],
                                  "cleaned": c["cleaned"]}, ensure_ascii=False) + "\n")
        for warning in manifest["warnings"]:
            log.write(warning + "\n")
            print(warning, file=sys.stderr)


run_cli(main, snakemake.log[0])
