# Config validation and the helpers every rule file shares. No rule lives here.
import json
import os
import sys
from pathlib import PurePosixPath
from urllib.parse import urlparse

import yaml
from jsonschema import Draft202012Validator
from snakemake.utils import validate

CONFIG_SCHEMA = "../workflow/schemas/config.schema.yaml"
# Every rule's environment under `--sdm conda` (ignored otherwise); relative to the rule files in rules/.
CONDA_ENV = "../envs/wikigpt.yaml"


def first_duplicate(names):
    """The first name that occurs more than once, or None."""
    return next((n for n in names if names.count(n) > 1), None)


def fail(message):
    """Stop before any job runs with one line on stderr."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def check_against_schema(cfg, schema_path):
    """Fail before any job runs, in one line that names the offending key (jsonschema's own report is a page)."""
    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    errors = sorted(Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    err = errors[0]
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path).lstrip(".")
    where = where or "<top level>"
    if err.validator == "additionalProperties":
        unknown = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        message = f"unknown key {', '.join(map(repr, unknown))} in {where}"
    else:
        message = f"{where}: {err.message}"
    fail(f"config: {message}")


check_against_schema(config, workflow.source_path(CONFIG_SCHEMA))
validate(config, CONFIG_SCHEMA)  # fills in the schema's defaults


def check_before_any_job(check, *args):
    """A gpt2core.config rule, turned into the workflow's one-line stop; returns what the rule returns."""
    from gpt2core.errors import WikiGPTError

    try:
        return check(*args)
    except WikiGPTError as exc:
        fail(str(exc))


from gpt2core.config import check_config, resolve_layout
from gpt2core.data.download import check_local_source

check_before_any_job(check_config, config)  # every rule between keys (layout and speed levers included)
config["train"] = check_before_any_job(resolve_layout, config["train"])  # train: {tp: 2} alone means 2 processes


DATA = "data"


def expand_sources(cfg):
    """A dump URL with a glob in its file name becomes one source per matching part in its checksum file."""
    from gpt2core.data.download import Transfer, expand_source
    from gpt2core.errors import WikiGPTError

    limits = Transfer.from_limits(cfg["limits"])
    try:
        for corpus in cfg["corpora"]:
            folder = f"{DATA}/downloads/{corpus['name']}"  # remote lists kept there: later builds run offline
            corpus["sources"] = [part for src in corpus["sources"]
                                 for part in expand_source(src, folder, limits)]
    except WikiGPTError as exc:
        fail(str(exc))


expand_sources(config)
CORPORA = {c["name"]: c for c in config["corpora"]}  # names are unique (gpt2core.config.check_config)

SCRIPTS = "../workflow/scripts"
RESULTS = "results"
CHECKPOINTS = f"checkpoints/{config['run_name']}"
N_SHARDS = config["presplit"]["shards"]
SHARDS = [f"{i:05d}" for i in range(N_SHARDS)]
SPLITS = ["train", "valid", "test"]


def source_name(source):
    """The file name a source is stored under: the last path component of its URL."""
    path = urlparse(source["url"]).path if "://" in source["url"] else source["url"]
    name = PurePosixPath(path).name
    if not name or name in (".", ".."):
        fail(f"config: cannot take a file name from url {source['url']!r}")
    if "{" in name or "}" in name:  # Snakemake would read them as wildcards in the paths named after it
        fail(f"config: source {source['url']!r}: a file name with braces ({name}) cannot name a part; rename "
             "the file (or link it under a name without braces)")
    return name


def check_part_names():
    """A corpus's parts are named by their files' names: two sources stored under one name would make one
    part read twice and the other never."""
    for corpus in config["corpora"]:
        dup = first_duplicate([source_name(s) for s in corpus["sources"]])
        if dup is not None:
            urls = [s["url"] for s in corpus["sources"] if source_name(s) == dup]
            fail(f"config: corpus {corpus['name']!r} has two sources named {dup} ({urls[0]}, {urls[1]}): "
                 "file names name a corpus's parts; rename one, or put them in two corpora")


check_part_names()


def _register_downloads():
    """Map every downloaded file (path under data/downloads/) to its source entry."""
    table = {}
    for corpus in config["corpora"]:
        for source in corpus["sources"]:
            table[f"{corpus['name']}/{source_name(source)}"] = source
    tok = config["tokenizer"]
    if tok["kind"] == "gpt2":
        for key in ("encoder", "vocab"):  # both named (gpt2core.config.check_tokenizer_files)
            table[f"tokenizer/{source_name(tok[key])}"] = tok[key]
    for key in ("wiki103", "lambada"):
        source = config["eval"][key].get("source")
        if source is not None:
            table[f"eval/{key}/{source_name(source)}"] = source
    return table


DOWNLOADS = _register_downloads()


def downloaded(key):
    return f"{DATA}/downloads/{key}"


def check_local_sources():
    """Local files the config names must be there (or downloaded already) before any job runs."""
    named = [(f"corpus {c['name']!r} source", s, f"{c['name']}/{source_name(s)}")
             for c in config["corpora"] for s in c["sources"]]
    if config["tokenizer"]["kind"] == "gpt2":
        named += [(f"tokenizer.{k}", config["tokenizer"][k], f"tokenizer/{source_name(config['tokenizer'][k])}")
                  for k in ("encoder", "vocab")]
    named += [(f"eval.{k}.source", config["eval"][k]["source"], f"eval/{k}/{source_name(config['eval'][k]['source'])}")
              for k in ("wiki103", "lambada") if config["eval"][k].get("source")]
    for what, source, key in named:
        check_before_any_job(check_local_source, source, what, downloaded(key))


check_local_sources()


def corpus_parts(corpus_name):
    """Part ids of one corpus: the file names of its sources (each flows through the DAG in parallel)."""
    return [source_name(s) for s in CORPORA[corpus_name]["sources"]]


def eval_file(key):
    """Local path of the downloaded eval file for `wiki103` or `lambada`, or None if not configured."""
    source = config["eval"][key].get("source")
    return downloaded(f"eval/{key}/{source_name(source)}") if source else None


def decontamination_titles():
    """The title list presplit removes from training corpora, when WikiText-103 eval is configured."""
    wiki = config["eval"]["wiki103"]
    if wiki.get("source") and wiki["decontaminate"]:
        return [f"{DATA}/eval/wiki103_titles.txt"]
    return []


def limits(*keys):
    """`limits=` for a rule's params holding only those of `keys` the config sets (so a config that sets
    none keeps the params it had before limits existed): use as `**limits(...)` in `params:`."""
    chosen = {k: config["limits"][k] for k in keys if k in config["limits"]}
    return {"limits": chosen} if chosen else {}


def tokenizer_json():
    return f"{RESULTS}/tokenizer/tokenizer.json"


def manifest():
    return f"{RESULTS}/data/manifest.json"


def all_targets():
    targets = [
        manifest(),
        f"{RESULTS}/train/done.json",
        f"{RESULTS}/loss_curve.png",
        f"{RESULTS}/model/config.json",
        f"{RESULTS}/samples.jsonl",
    ]
    if config["eval"]["wiki103"].get("source"):
        targets.append(f"{RESULTS}/ppl_wiki103.txt")
    if config["eval"]["lambada"].get("source") and config["eval"]["lambada"]["enabled"]:
        targets.append(f"{RESULTS}/lambada.json")
    if config["eval"]["wiki103"].get("source") or f"{RESULTS}/lambada.json" in targets:
        targets.append(f"{RESULTS}/eval_table.html")
    return targets


# A Snakemake killed with SIGKILL leaves its lock behind; a plain rerun removes it only when the Snakemake
# that took it is provably dead on this host (workflow/lib/snakemake_locks.py), so a live run on the same
# directory is still refused.
sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "lib"))
from snakemake_force import train_forced
from snakemake_locks import clear_stale_locks, record_lock_owner
from gpt2core.training import retrain

clear_stale_locks(".snakemake", warn=lambda message: print(message, file=sys.stderr), runs=[CHECKPOINTS])


onstart:
    record_lock_owner(".snakemake")
    # Tell the trainer whether this invocation forces train (-R train, -F, -f on its outputs): only then is
    # a finished run with the same config trained again (gpt2core/training/retrain.py). Not in a dry run.
    _dag = workflow.dag_settings
    retrain.set_request(CHECKPOINTS, train_forced(
        "train", [f"{RESULTS}/train/done.json", f"{RESULTS}/train/metrics.jsonl"], forceall=_dag.forceall,
        forcerun=_dag.forcerun, forcetargets=_dag.forcetargets, targets=_dag.targets))
