"""Snakemake script for rule tokenizer (see gpt2core.data.tokenizer)."""

import json
import os
import sys

from gpt2core.errors import run_cli

os.environ["RAYON_NUM_THREADS"] = str(snakemake.threads)  # tokenizers' training pool, before it starts


def main() -> None:
    from gpt2core.data.encoder import write_check
    from gpt2core.data.tokenizer import build_gpt2, train_bpe
    from gpt2core.fsutil import write_text_atomic

    tok = snakemake.params.tok
    if tok["kind"] == "gpt2":
        info = build_gpt2(snakemake.input.encoder, snakemake.input.vocab, snakemake.output.json)
    else:
        files = list(snakemake.input.shards)
        n = snakemake.params.shards
        corpora = [files[i * n:(i + 1) * n] for i in range(len(snakemake.params.corpora))]
        info = train_bpe(corpora, snakemake.output.json, tok["vocab_size"], tok["min_frequency"],
                         tok["sample_bytes"], list(snakemake.params.weights), list(snakemake.params.langs))
        for name, got in zip(snakemake.params.corpora, info["sample"], strict=True):
            got["corpus"] = name
    info["check"] = write_check(snakemake.output.json, snakemake.output.check)
    write_text_atomic(snakemake.output.stats, json.dumps(info, indent=1) + "\n")
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(json.dumps(info) + "\n")
        for lang, m in info.get("heldout", {}).items():
            log.write(f"held-out {lang}: {m['chars_per_token']} characters per token "
                      f"({m['documents']} documents, {m['chars']} characters)\n")
            if m.get("warning"):
                log.write(m["warning"] + "\n")
                print(m["warning"], file=sys.stderr)


run_cli(main, snakemake.log[0])
