# Stage evaluate: WikiText-103 perplexity (the reference's method), LAMBADA accuracy, the decontamination
# title list, and the results table of the report. Reads the model only from results/model/ (rule merge).
# Rules exist only for the eval files the config names (eval.wiki103.source, eval.lambada.source).

MODEL_FILES = [f"{RESULTS}/model/{name}" for name in ("config.json", "model.safetensors", "tokenizer.json")]
WIKI103 = config["eval"]["wiki103"]
LAMBADA = config["eval"]["lambada"]
RUN_LAMBADA = bool(LAMBADA.get("source")) and LAMBADA["enabled"]
EVAL_THREADS = config["train"]["threads"]


if WIKI103.get("source"):

    rule eval_titles:
        input:
            eval_file("wiki103"),
        output:
            f"{DATA}/eval/wiki103_titles.txt",
        threads: 1
        conda:
            CONDA_ENV
        log:
            "logs/eval_titles/eval_titles.log",
        benchmark:
            "logs/benchmarks/eval_titles/eval_titles.tsv"
        script:
            f"{SCRIPTS}/eval_titles.py"

    rule ppl_wiki103:
        input:
            model=MODEL_FILES,
            eval=eval_file("wiki103"),
        output:
            txt=report(f"{RESULTS}/ppl_wiki103.txt", category="Evaluation",
                       caption="../workflow/report/ppl_wiki103.rst"),
            json=report(f"{RESULTS}/ppl_wiki103.json", category="Evaluation",
                        caption="../workflow/report/ppl_wiki103.rst"),
        params:
            model_dir=f"{RESULTS}/model",
            overlap=WIKI103["overlap"],
            seq_len=WIKI103["seq_len"],
            batch_size=WIKI103["batch_size"],
        threads: EVAL_THREADS
        conda:
            CONDA_ENV
        log:
            "logs/ppl_wiki103/ppl_wiki103.log",
        benchmark:
            "logs/benchmarks/ppl_wiki103/ppl_wiki103.tsv"
        script:
            f"{SCRIPTS}/ppl_wiki103.py"


if RUN_LAMBADA:

    rule lambada:
        input:
            model=MODEL_FILES,
            eval=eval_file("lambada"),
        output:
            report(f"{RESULTS}/lambada.json", category="Evaluation", caption="../workflow/report/lambada.rst"),
        params:
            model_dir=f"{RESULTS}/model",
            batch_size=LAMBADA["batch_size"],
        threads: EVAL_THREADS
        conda:
            CONDA_ENV
        log:
            "logs/lambada/lambada.log",
        benchmark:
            "logs/benchmarks/lambada/lambada.tsv"
        script:
            f"{SCRIPTS}/lambada.py"


rule eval_table:
    input:
        ppl=[f"{RESULTS}/ppl_wiki103.json"] if WIKI103.get("source") else [],
        lambada=[f"{RESULTS}/lambada.json"] if RUN_LAMBADA else [],
        done=f"{RESULTS}/train/done.json",
        metrics=f"{RESULTS}/train/metrics.jsonl",
    output:
        report(f"{RESULTS}/eval_table.html", category="Evaluation", caption="../workflow/report/eval_table.rst"),
    params:
        run_name=config["run_name"],
    threads: 1
    conda:
        CONDA_ENV
    log:
        "logs/eval_table/eval_table.log",
    benchmark:
        "logs/benchmarks/eval_table/eval_table.tsv"
    script:
        f"{SCRIPTS}/eval_table.py"

