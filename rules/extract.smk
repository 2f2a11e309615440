# extract: WikiExtractor --json on one dump part -> data/extract/<corpus>/<part>/ (AA/wiki_00, ...).


rule extract:
    input:
        lambda wc: downloaded(f"{wc.corpus}/{wc.part}"),
    output:
        directory(f"{DATA}/extract/{{corpus}}/{{part}}"),
    wildcard_constraints:
        corpus="[A-Za-z0-9_-]+",
        part="[^/]+",
    log:
        "logs/extract/{corpus}/{part}.log",
    benchmark:
        "logs/benchmarks/extract/{corpus}/{part}.tsv"
    threads: 8
    script:
        f"{SCRIPTS}/extract.py"
