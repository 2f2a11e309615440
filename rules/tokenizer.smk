# tokenizer: results/tokenizer/tokenizer.json, OpenAI's GPT-2 BPE (kind gpt2, files through `download`)
# or a byte-level BPE trained on a sample of every corpus (kind bpe); tiktoken_check.json records once
# whether a tiktoken Encoding built from it gives the same ids (gpt2core.data.encoder), so workers skip it.
# stats.json: what it was trained on (bytes per corpus, weighted) and characters per token per language
# on held-out documents (kind bpe).


def _tokenizer_inputs(wildcards):
    tok = config["tokenizer"]
    if tok["kind"] == "gpt2":
        return {"encoder": downloaded(f"tokenizer/{source_name(tok['encoder'])}"),
                "vocab": downloaded(f"tokenizer/{source_name(tok['vocab'])}")}
    return {"shards": [f"{DATA}/presplit/{c}/{s}.parquet" for c in CORPORA for s in SHARDS]}


def _tokenizer_params():
    tok = config["tokenizer"]
    if tok["kind"] == "gpt2":
        return {"kind": "gpt2"}
    return {k: tok[k] for k in ("kind", "vocab_size", "min_frequency", "sample_bytes")}


rule tokenizer:
    input:
        unpack(_tokenizer_inputs),
    output:
        json=tokenizer_json(),
        check=f"{RESULTS}/tokenizer/tiktoken_check.json",
        stats=f"{RESULTS}/tokenizer/stats.json",
    params:
        tok=_tokenizer_params(),
        corpora=list(CORPORA),
        weights=[c["weight"] for c in CORPORA.values()] if config["tokenizer"]["kind"] == "bpe" else [],
        langs=[c["lang"] for c in CORPORA.values()] if config["tokenizer"]["kind"] == "bpe" else [],
        shards=N_SHARDS,
    conda:
        CONDA_ENV
    log:
        "logs/tokenizer/tokenizer.log",
    benchmark:
        "logs/benchmarks/tokenizer/tokenizer.tsv"
    threads: 4
    script:
        f"{SCRIPTS}/tokenizer.py"
