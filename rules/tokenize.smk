# split_plan: per corpus, the documents moved to valid/test when the hash drew none there (see
# gpt2core.data.split_plan) -> data/tokens/<corpus>/split_plan.json.
# tokenize: one job per presplit shard -> data/tokens/<corpus>/<shard>/{train,valid,test}.{bin,idx.npy}
# and stats.json; gather: every shard -> results/data/manifest.json (overall splits, and per corpus with
# its name, kind, lang and weight for weighted blending).

from gpt2core.config import check_token_dtype
from gpt2core.data.download import is_remote, local_path


def _vocab_size_known_now(tok):
    """The vocabulary size before any job: kind bpe's configured size; kind gpt2's encoder.json entries when
    that file is local (a remote one is checked by tokenize, once downloaded)."""
    if tok["kind"] == "bpe":
        return tok["vocab_size"], "tokenizer.vocab_size"
    url = (tok.get("encoder") or {}).get("url", "")
    path = None if not url or is_remote(url) else local_path(url)
    if path is None or not path.is_file():
        return None, None
    try:
        return len(json.loads(path.read_text(encoding="utf-8"))), f"{path}: vocabulary"
    except (OSError, ValueError) as exc:
        fail(f"{path}: not a GPT-2 encoder.json ({exc})")


_size, _what = _vocab_size_known_now(config["tokenizer"])
if _size is not None:
    check_before_any_job(check_token_dtype, _size, _what, config["data"]["dtype"])


def _token_files(corpus, shard):
    folder = f"{DATA}/tokens/{corpus}/{shard}"
    return [f"{folder}/{s}{ext}" for s in SPLITS for ext in (".bin", ".idx.npy")] + [f"{folder}/stats.json"]


def _split_plan(corpus):
    return f"{DATA}/tokens/{corpus}/split_plan.json"


rule split_plan:
    input:
        lambda wc: [f"{DATA}/presplit/{wc.corpus}/{s}.parquet" for s in SHARDS],
    output:
        _split_plan("{corpus}"),
    wildcard_constraints:
        corpus="[A-Za-z0-9_-]+",
    params:
        split=config["data"]["split"],
        seed=config["data"]["seed"],
    conda:
        CONDA_ENV
    log:
        "logs/split_plan/{corpus}.log",
    benchmark:
        "logs/benchmarks/split_plan/{corpus}.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/split_plan.py"


rule tokenize:
    input:
        parquet=f"{DATA}/presplit/{{corpus}}/{{shard}}.parquet",
        plan=_split_plan("{corpus}"),
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
    conda:
        CONDA_ENV
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
        plans=[_split_plan(c) for c in CORPORA],
        tokenizer=tokenizer_json(),
        tokenizer_stats=f"{RESULTS}/tokenizer/stats.json",
    output:
        # in the report when it exists: `--report` on a workdir whose model was placed, not trained here,
        # must not fail for a manifest that was never made
        report(manifest(), category="Data", caption="../workflow/report/manifest.rst")
        if os.path.exists(manifest()) else manifest(),
    params:
        dtype=config["data"]["dtype"],
        corpora=[{k: c[k] for k in ("name", "kind", "lang", "weight")} for c in CORPORA.values()],
    conda:
        CONDA_ENV
    log:
        "logs/gather/gather.log",
    benchmark:
        "logs/benchmarks/gather/gather.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/gather.py"
