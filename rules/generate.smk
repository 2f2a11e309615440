# Stage generate: samples from the exported model (results/model/, read like evaluation reads it).


def _prompts_file():
    path = config["generate"]["prompts_file"]
    return [path] if path else []


rule generate:
    input:
        config=f"{RESULTS}/model/config.json",
        weights=f"{RESULTS}/model/model.safetensors",
        tokenizer=f"{RESULTS}/model/tokenizer.json",
        prompts_file=_prompts_file(),
    output:
        report(f"{RESULTS}/samples.jsonl", category="Generation", caption="../workflow/report/samples.rst"),
    params:
        prompts=config["generate"]["prompts"],
        prompts_file=config["generate"]["prompts_file"],
        settings={k: v for k, v in config["generate"].items() if k not in ("prompts", "prompts_file")},
    threads: 1
    conda:
        CONDA_ENV
    log:
        "logs/generate/generate.log",
    benchmark:
        "logs/benchmarks/generate/generate.tsv"
    script:
        f"{SCRIPTS}/generate.py"
