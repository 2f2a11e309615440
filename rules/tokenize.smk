# tokenize: one job per presplit shard -> data/tokens/<corpus>/<shard>/{train,valid,test}.{bin,idx.npy}
# and stats.json; gather: every shard -> results/data/manifest.json (overall splits, and per corpus with
# its name, kind, lang and weight for weighted blending).

if (config["data"]["dtype"] == "uint16" and config["tokenizer"]["kind"] == "bpe"
        and config["tokenizer"]["vocab_size"] > 65536):
    print(f"error: config: tokenizer.vocab_size {config['tokenizer']['vocab_size']} does not fit "
          "data.dtype uint16 (at most 65536 tokens); use data.dtype uint32", file=sys.stderr)
    sys.exit(1)


def _token_files(corpus, shard):
    folder = f"{DATA}/tokens/{corpus}/{shard}"
    return [f"{folder}/{s}{ext}" for s in SPLITS for ext in (".bin", ".idx.npy")] + [f"{folder}/stats.json"]


rule tokenize:
    input:
        parquet=f"{DATA}/presplit/{{corpus}}/{{shard}}.parquet",
        tokenizer=tokenizer_json(),
        check=f"{RESULTS}/tokenizer/tiktoken_check.json",
    output:
        _token_files("{corpus}", "{shard}"),
    wildcard_constraints:
        corpus="[A-Za-z0-9_-]+",
        shard="[0-9]{5}",
    params:
        split=config["data"]["split"],
        seed=config["data"]["seed"],
        dtype=config["data"]["dtype"],
    log:
        "logs/tokenize/{corpus}/{shard}.log",
    benchmark:
        "logs/benchmarks/tokenize/{corpus}/{shard}.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/tokenize.py"


rule gather:
    input:
        stats=[f"{DATA}/tokens/{c}/{s}/stats.json" for c in CORPORA for s in SHARDS],
        tokenizer=tokenizer_json(),
        tokenizer_stats=f"{RESULTS}/tokenizer/stats.json",
    output:
        manifest(),
    params:
        dtype=config["data"]["dtype"],
        corpora=[{k: c[k] for k in ("name", "kind", "lang", "weight")} for c in CORPORA.values()],
    log:
        "logs/gather/gather.log",
    benchmark:
        "logs/benchmarks/gather/gather.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/gather.py"
