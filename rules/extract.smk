# extract: one downloaded source part -> data/extract/<corpus>/<part>/ (AA/wiki_00, ...), JSON lines of
# {id, title, url, text}: WikiExtractor --json for kind wikipedia, gpt2core.data.sources for jsonl/mnbvc.
from gpt2core.data.templates import table_version


def _extract_spec(wc):
    corpus = CORPORA[wc.corpus]
    spec = {"kind": corpus["kind"]}
    if corpus["kind"] == "jsonl":
        spec["text_field"] = corpus["text_field"]
    if corpus["kind"] == "wikipedia":  # unescaped text, inline templates kept: a changed table reruns extract
        spec["templates"] = table_version()
    return spec


rule extract:
    input:
        lambda wc: downloaded(f"{wc.corpus}/{wc.part}"),
    output:
        directory(f"{DATA}/extract/{{corpus}}/{{part}}"),
    wildcard_constraints:
        corpus="[A-Za-z0-9_-]+",
        part="[^/]+",
    params:
        spec=_extract_spec,
        **limits("extract_deadline_floor_s", "extract_deadline_s_per_mb", "extract_stall_s"),
    conda:
        CONDA_ENV
    log:
        "logs/extract/{corpus}/{part}.log",
    benchmark:
        "logs/benchmarks/extract/{corpus}/{part}.tsv"
    threads: lambda wc: 8 if CORPORA[wc.corpus]["kind"] == "wikipedia" else 1
    script:
        f"{SCRIPTS}/extract.py"
