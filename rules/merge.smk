# Stage merge: the final step checkpoint (named in results/train/done.json) -> results/model/ in the
# Hugging Face GPT-2 layout, padded vocabulary rows trimmed (their size kept in config.json).


rule merge:
    input:
        done=f"{RESULTS}/train/done.json",
        tokenizer=tokenizer_json(),
    output:
        config=f"{RESULTS}/model/config.json",
        weights=f"{RESULTS}/model/model.safetensors",
        tokenizer=f"{RESULTS}/model/tokenizer.json",
    threads: 1
    conda:
        CONDA_ENV
    log:
        "logs/merge/merge.log",
    benchmark:
        "logs/benchmarks/merge/merge.tsv"
    script:
        f"{SCRIPTS}/merge.py"
