# download: one generic rule for every file the run needs (dump parts, tokenizer files, eval files).
# `key` is a key of DOWNLOADS (common.smk): "<corpus>/<file>", "tokenizer/<file>", "eval/<name>/<file>".
import re as _re

from gpt2core.data.download import is_remote, local_path


def copied_local_file(wildcards):
    """A local source that is copied is this rule's input, so editing it reruns the copy and what follows.
    Not for remote sources, nor for `link: true` (Snakemake already dates the link by its file), nor for a
    missing file (the download names it in one line)."""
    source = DOWNLOADS[wildcards.key]
    if is_remote(source["url"]) or source.get("link"):
        return []
    path = local_path(source["url"])
    return [str(path)] if path.is_file() else []


rule download:
    input:
        copied_local_file,
    output:
        f"{DATA}/downloads/{{key}}",
    wildcard_constraints:
        key="|".join(_re.escape(k) for k in DOWNLOADS),
    params:
        source=lambda wc: DOWNLOADS[wc.key],
        **limits("download_min_rate", "download_grace_s", "download_read_timeout_s"),
    conda:
        CONDA_ENV
    log:
        "logs/download/{key}.log",
    benchmark:
        "logs/benchmarks/download/{key}.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/download.py"
