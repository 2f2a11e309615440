# wikigpt: raw text -> trained GPT-2 -> WikiText-103 perplexity, one cached, resumable DAG.
# Stages live one per file under rules/; helpers and config validation in rules/common.smk.
from snakemake.utils import min_version

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
