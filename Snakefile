# wikigpt: raw text -> trained GPT-2 -> WikiText-103 perplexity, one cached, resumable DAG.
# Stages live one per file under rules/; helpers and config validation in rules/common.smk.
import time

from snakemake.utils import min_version

RUN_STARTED = time.time()  # what this run wrote is newer: the summary reports only that

min_version("8.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/extract.smk"
include: "rules/presplit.smk"
include: "rules/tokenizer.smk"
include: "rules/tokenize.smk"
include: "rules/train.smk"
include: "rules/merge.smk"
include: "rules/generate.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True


onsuccess:
    from run_summary import run_summary  # workflow/lib (rules/common.smk puts it on the path)

    summary = run_summary(RESULTS, RUN_STARTED)
    if summary:
        print(summary, flush=True)
