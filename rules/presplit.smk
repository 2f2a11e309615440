# presplit: every extracted file of a corpus, shared out over presplit.shards jobs by a fixed rule
# -> data/presplit/<corpus>/<shard>.parquet (id, title, url, text; sentences one a line). The corpus's
# lang picks the sentence splitter (zh: punctuation), t2s converts Traditional to Simplified first.


rule presplit:
    input:
        parts=lambda wc: [f"{DATA}/extract/{wc.corpus}/{p}" for p in corpus_parts(wc.corpus)],
        titles=decontamination_titles(),
    output:
        f"{DATA}/presplit/{{corpus}}/{{shard}}.parquet",
    wildcard_constraints:
        corpus="[A-Za-z0-9_-]+",
        shard="[0-9]{5}",
    params:
        parts=lambda wc: corpus_parts(wc.corpus),
        shards=config["presplit"]["shards"],
        split_sentences=config["presplit"]["split_sentences"],
        min_chars=lambda wc: CORPORA[wc.corpus].get("min_chars", config["presplit"]["min_chars"]),
        lang=lambda wc: CORPORA[wc.corpus]["lang"],
        t2s=lambda wc: CORPORA[wc.corpus]["t2s"],
        **limits("max_line_bytes", "max_paragraph_chars"),
        clean_wikitext=lambda wc: CORPORA[wc.corpus]["kind"] == "wikipedia",
    conda:
        CONDA_ENV
    log:
        "logs/presplit/{corpus}/{shard}.log",
    benchmark:
        "logs/benchmarks/presplit/{corpus}/{shard}.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/presplit.py"
