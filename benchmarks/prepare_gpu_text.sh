#!/usr/bin/env bash
# Real text for the GPU loss-curve rows (benchmarks/gpu_loss_curves.py): the shared enwiki excerpt
# (../shared/data, 206 pages) through this project's own data stages (download, WikiExtractor, presplit,
# GPT-2 BPE tokenization) into .gpu_data/ (ignored by git), which travels with a GPU run as `carry: [".gpu_data"]`
# because the GPU machine sees only the checkout. Run it here, once, before the GPU call:
#   bash benchmarks/prepare_gpu_text.sh          # -> .gpu_data/results/data/manifest.json (+ its token shards)
#   GPU_DATA=/elsewhere bash benchmarks/prepare_gpu_text.sh   # another folder (the tests use one in tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${GPU_DATA:-.gpu_data}"
SHARED="${SHARED_DATA:-$PWD/../shared/data}"
DUMP="$SHARED/enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
for f in "$DUMP" "$SHARED/gpt2_bpe/encoder.json" "$SHARED/gpt2_bpe/vocab.bpe"; do
  [[ -f "$f" ]] || { echo "error: $f is missing (the shared reference data)" >&2; exit 1; }
done
sha() { sha256sum "$1" | cut -d' ' -f1; }
mkdir -p "$DEST"
cat > "$DEST/config.yaml" <<YAML
run_name: gpu-loss-curves
corpora:
  - name: enwiki
    kind: wikipedia
    lang: en
    sources:
      - {url: "$DUMP", sha256: "$(sha "$DUMP")"}
presplit: {shards: 1, split_sentences: false, min_chars: 200}
tokenizer:
  kind: gpt2
  encoder: {url: "$SHARED/gpt2_bpe/encoder.json", sha256: "$(sha "$SHARED/gpt2_bpe/encoder.json")"}
  vocab: {url: "$SHARED/gpt2_bpe/vocab.bpe", sha256: "$(sha "$SHARED/gpt2_bpe/vocab.bpe")"}
data: {split: [90, 10, 0], seed: 1234, dtype: uint16}
YAML
PY="${PYTHON:-python3}"
"$PY" -m snakemake -s Snakefile -d "$DEST" --configfile "$DEST/config.yaml" --cores "${CORES:-2}" -q rules \
  -- results/data/manifest.json
"$PY" - "$DEST" <<'PY'
import json, sys
m = json.load(open(f"{sys.argv[1]}/results/data/manifest.json"))
print("gpu text:", {k: sum(s["tokens"] for s in v["shards"]) for k, v in m["splits"].items()}, "tokens")
PY
