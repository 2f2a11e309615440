"""Snakemake script for rule presplit (see gpt2core.data.presplit)."""

import json

from gpt2core.data.presplit import presplit_shard
from gpt2core.errors import run_cli


def main() -> None:
    stats = presplit_shard(
        parts=list(zip(snakemake.params.parts, snakemake.input.parts, strict=True)),
        out=snakemake.output[0],
        shard=int(snakemake.wildcards.shard),
        shards=snakemake.params.shards,
        split=snakemake.params.split_sentences,
        min_chars=snakemake.params.min_chars,
        titles_files=list(snakemake.input.titles),
        lang=snakemake.params.lang,
        t2s=snakemake.params.t2s,
        **snakemake.params.get("limits", {}),
        clean=snakemake.params.clean_wikitext,
    )
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(json.dumps(stats) + "\n")


run_cli(main, snakemake.log[0])
