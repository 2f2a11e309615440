# download: one generic rule for every file the run needs (dump parts, tokenizer files, eval files).
# `key` is a key of DOWNLOADS (common.smk): "<corpus>/<file>", "tokenizer/<file>", "eval/<name>/<file>".
import re as _re


rule download:
    output:
        f"{DATA}/downloads/{{key}}",
    wildcard_constraints:
        key="|".join(_re.escape(k) for k in DOWNLOADS),
    params:
        source=lambda wc: DOWNLOADS[wc.key],
    log:
        "logs/download/{key}.log",
    benchmark:
        "logs/benchmarks/download/{key}.tsv"
    threads: 1
    script:
        f"{SCRIPTS}/download.py"
