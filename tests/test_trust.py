"""Trust: nothing we read can run code, no config value reaches a shell unquoted, downloads are checked,
and nothing from a dump (titles, ids) becomes a file path.

Static checks walk the source with `ast` (so a comment or a string cannot fool them); behavioural checks hand
the real loaders hostile files and run the real workflow from a directory whose path holds spaces, `;`,
`$(...)`, backticks and quotes, on a dump whose titles are `../` paths and shell commands."""

from __future__ import annotations

import ast
import bz2
import json
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SAMPLE, run_snakemake, tiny_config, write_config

from gpt2core.errors import WikiGPTError
from gpt2core.training.checkpoint import integrity
from gpt2core.training.checkpoint import plain as ckpt

SOURCES = sorted([*(REPO / "gpt2core").rglob("*.py"), *(REPO / "workflow/scripts").glob("*.py")])
HOSTILE = "a b;c $(touch PWNED1) `touch PWNED2` 'q\" && touch PWNED3 #"


def imported_names(tree: ast.AST) -> dict[str, str]:
    """Local name -> what it names, from every import in the file: `import numpy as np` (np -> numpy),
    `from pickle import loads as l` (l -> pickle.loads), `import os.path` (os -> os)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def full_name(expr: ast.expr, names: dict[str, str]) -> str | None:
    """The dotted name a call's function resolves to through the file's imports (None: not a plain name)."""
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return ".".join([names.get(expr.id, expr.id), *reversed(parts)])


def calls(tree: ast.AST, dotted: str) -> list[ast.Call]:
    """Calls of `dotted` (e.g. 'torch.load', 'np.load' for numpy's), however the file imported it: as a
    module, under an alias, or the function itself (`from torch import load`)."""
    names = imported_names(tree)
    want = "numpy." + dotted[3:] if dotted.startswith("np.") else dotted
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and full_name(node.func, names) == want]


@pytest.mark.parametrize(("source", "dotted", "found"), [
    ("import pickle\npickle.loads(b'')", "pickle.loads", 1),
    ("from pickle import loads\nloads(b'')", "pickle.loads", 1),
    ("import pickle as p\np.load(f)", "pickle.load", 1),
    ("from torch import load\nload(f)", "torch.load", 1),
    ("import torch\ntorch.load(f, weights_only=True)", "torch.load", 1),
    ("from subprocess import run\nrun('echo hi', shell=True)", "subprocess.run", 1),
    ("import numpy as np\nnp.load(f, allow_pickle=True)", "np.load", 1),
    ("eval('1')", "eval", 1),
    ("from gpt2core.data.manifest import load\nload(f)", "torch.load", 0),
    ("def f(obj):\n    return obj.load()", "torch.load", 0),
])
def test_the_static_checks_see_every_way_of_calling(source: str, dotted: str, found: int) -> None:
    """The checker itself: an imported function or an aliased module is still the call it names."""
    assert len(calls(ast.parse(source), dotted)) == found


def keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else ast.unparse(kw.value)
    return None


@pytest.fixture(scope="module")
def trees() -> dict[str, ast.AST]:
    return {str(p.relative_to(REPO)): ast.parse(p.read_text(encoding="utf-8")) for p in SOURCES}


# ---- static: no pickle of anything we read --------------------------------------------------------------
def test_nothing_unpickles_except_the_restricted_dcp_check(trees) -> None:
    bad = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if any(m and m.split(".")[0] in ("dill", "joblib", "cloudpickle", "marshal", "shelve") for m in mods):
                bad.append(f"{name}:{node.lineno} imports {mods}")
        for fn in ("pickle.load", "pickle.loads", "pickle.Unpickler", "torch.serialization._load"):
            bad += [f"{name}:{c.lineno} {fn}" for c in calls(tree, fn)]
        bad += [f"{name}:{node.lineno} subclasses pickle.Unpickler" for node in ast.walk(tree)
                if isinstance(node, ast.ClassDef) and any("Unpickler" in ast.unparse(b) for b in node.bases)
                and name != "gpt2core/training/checkpoint/integrity.py"]  # integrity's Unpickler allows only DCP's own classes
    assert not bad, bad


def test_every_torch_load_is_weights_only(trees) -> None:
    found = {name: calls(tree, "torch.load") for name, tree in trees.items()}
    assert any(found.values()), "torch.load is used somewhere (checkpoints); the check must see it"
    bad = [f"{n}:{c.lineno}" for n, cs in found.items() for c in cs if keyword(c, "weights_only") is not True]
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_no_numpy_pickle_no_unsafe_yaml_no_eval(trees) -> None:
    bad = []
    for name, tree in trees.items():
        for c in calls(tree, "np.load") + calls(tree, "numpy.load"):
            if keyword(c, "allow_pickle") not in (None, False):
                bad.append(f"{name}:{c.lineno} np.load(allow_pickle=...)")
        for fn in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec", "torch.jit.load"):
            bad += [f"{name}:{c.lineno} {fn}" for c in calls(tree, fn)]
    assert not bad, bad


def test_no_shell_in_the_library_or_scripts(trees) -> None:
    bad = []
    for name, tree in trees.items():
        for fn in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
            bad += [f"{name}:{c.lineno} {fn}" for c in calls(tree, fn)]
        for fn in ("subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
                   "subprocess.check_output"):
            for c in calls(tree, fn):
                if keyword(c, "shell") not in (None, False):
                    bad.append(f"{name}:{c.lineno} {fn}(shell=True)")
                if c.args and isinstance(c.args[0], ast.Constant | ast.JoinedStr):
                    bad.append(f"{name}:{c.lineno} {fn} with a command string")
    assert not bad, bad


# ---- behaviour: hostile pickles are refused, never run ----------------------------------------------------
class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def good_checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module, torch.optim.Optimizer, dict]:
    from gpt2core.model import GPT, GPTConfig

    cfg = GPTConfig(vocab_size=100, padded_vocab_size=128, n_layer=1, n_head=2, n_embd=16, n_positions=16)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters())
    path = ckpt.save_checkpoint(tmp_path / "ckpts", 1, model, opt, {"model_config": cfg.__dict__}, keep_last=1)
    return path, model, opt, dict(cfg.__dict__)


@pytest.mark.parametrize("victim", ["optimizer.pt", "rng.pt"])
def test_hostile_pickle_in_a_checkpoint_does_not_run(good_checkpoint, tmp_path: Path, victim: str) -> None:
    path, model, opt, cfg = good_checkpoint
    marker = tmp_path / "PWNED"
    torch.save({"state": Payload(marker)}, path / victim)
    with pytest.raises(Exception) as info:  # noqa: B017 (any refusal will do; the marker is the point)
        ckpt.load_checkpoint(path, model, opt, cfg)
    assert not marker.exists(), "loading a checkpoint ran code from it"
    assert "weights_only" in str(info.value) or "Unsupported global" in str(info.value) or \
        isinstance(info.value, WikiGPTError)


def test_hostile_pickle_in_a_checkpoint_is_a_one_line_error(good_checkpoint, tmp_path: Path) -> None:
    path, model, opt, cfg = good_checkpoint
    torch.save({"state": Payload(tmp_path / "PWNED")}, path / "optimizer.pt")
    with pytest.raises(WikiGPTError, match="optimizer.pt"):
        ckpt.load_checkpoint(path, model, opt, cfg)


def test_hostile_dcp_metadata_is_refused_unread_and_real_metadata_passes(tmp_path: Path) -> None:
    import warnings

    import torch.distributed.checkpoint as dcp

    model = torch.nn.Linear(4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": model.state_dict()}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    integrity.check_dcp_metadata(tmp_path / "dcp" / ".metadata")
    marker = tmp_path / "PWNED"
    (tmp_path / "dcp" / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(integrity.IntegrityError, match=r"refusing to unpickle: it names pathlib\.Path\.touch|"
                       r"refusing to unpickle: it names pathlib\.touch"):
        integrity.check_dcp_metadata(tmp_path / "dcp" / ".metadata")
    assert not marker.exists()
    (tmp_path / "dcp" / ".metadata").write_bytes(b"\x80\x04garbage")
    with pytest.raises(integrity.IntegrityError, match="unreadable checkpoint metadata"):
        integrity.check_dcp_metadata(tmp_path / "dcp" / ".metadata")


def test_dcp_metadata_with_enum_members_pickled_by_getattr_passes_and_other_getattr_is_refused(
        tmp_path: Path) -> None:
    """Python 3.11.2 and 3.12+ pickle an enum member as getattr(cls, name); DCP's metadata holds enum members."""
    import enum
    import io
    import warnings

    import torch.distributed.checkpoint as dcp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"model": torch.nn.Linear(4, 4).state_dict()}, checkpoint_id=str(tmp_path / "dcp"), no_dist=True)
    metadata_path = tmp_path / "dcp" / ".metadata"
    metadata = pickle.loads(metadata_path.read_bytes())

    class EnumByGetattr(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, enum.Enum):
                return getattr, (type(obj), obj.name)
            return NotImplemented

    buffer = io.BytesIO()
    EnumByGetattr(buffer, protocol=4).dump(metadata)
    assert b"getattr" in buffer.getvalue(), "the metadata holds no enum member: this test checks nothing"
    metadata_path.write_bytes(buffer.getvalue())
    integrity.check_dcp_metadata(metadata_path)

    class PathTouchByGetattr:
        def __reduce__(self):
            return getattr, (Path, "touch")

    metadata_path.write_bytes(pickle.dumps(PathTouchByGetattr(), protocol=4))
    with pytest.raises(integrity.IntegrityError, match=r"refusing to unpickle: it names getattr\(.*'touch'\)"):
        integrity.check_dcp_metadata(metadata_path)


def test_hostile_idx_npy_does_not_run(tmp_path: Path) -> None:
    from gpt2core.data.manifest import check_shard

    marker = tmp_path / "PWNED"
    (tmp_path / "train.bin").write_bytes(b"\0\0" * 4)
    idx = tmp_path / "train.idx.npy"
    np.save(idx, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    from gpt2core.errors import WikiGPTError

    # np.load(mmap_mode="r") refuses object arrays; check_shard turns that into a one-line error naming the file
    with pytest.raises(WikiGPTError, match=r"train\.idx\.npy: not a readable .*Python objects"):
        check_shard(tmp_path / "train.bin", idx, "uint16")
    assert not marker.exists()


# ---- shell quoting: hostile config values reach the train shell as one intact argument ---------------------
def test_hostile_config_value_reaches_the_train_shell_quoted(tmp_path: Path) -> None:
    """Every value in `rule train`'s shell command is quoted: Snakemake's own rendering of the command,
    split like a shell would split it, gives back the hostile rdzv endpoint and run JSON intact."""
    config = tiny_config(train={"rdzv_endpoint": HOSTILE})
    write_config(tmp_path, config)
    out = run_snakemake(tmp_path, "-n", "-p", "--forceall", "results/train/done.json").stdout
    start = out.index("EP=")
    command = out[start:out.index(' echo "+ ', start)]  # up to where the command line is logged
    words = shlex.split(command)
    assert f"EP={HOSTILE};" in words  # one word, every metacharacter still inside it
    train_json = words[words.index("--train") + 1]
    assert json.loads(train_json)["rdzv_endpoint"] == HOSTILE
    assert not list(tmp_path.rglob("PWNED*"))


# ---- end to end: a hostile working directory and hostile titles ------------------------------------------
def hostile_dump(dest: Path) -> Path:
    """The sample dump plus pages whose titles are path traversals and shell commands."""
    xml = bz2.decompress((SAMPLE / "samplewiki-pages-articles.xml.bz2").read_bytes()).decode()
    text = " ".join(["Paths and commands in a title must stay text, never reach a file system or a shell."] * 8)
    pages = ""
    for i, title in enumerate(["../../../../tmp/PWNED_title", "$(touch PWNED_t1); `touch PWNED_t2` | rm -rf x",
                               "..", "/etc/passwd"]):
        safe = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        pages += (f"  <page>\n    <title>{safe}</title>\n    <ns>0</ns>\n    <id>{990000 + i}</id>\n"
                  f"    <revision>\n      <id>{991000 + i}</id>\n      <text xml:space=\"preserve\">{text}\n\n"
                  f"{text}</text>\n    </revision>\n  </page>\n")
    dest.write_bytes(bz2.compress(xml.replace("</mediawiki>", pages + "</mediawiki>").encode()))
    return dest


@pytest.mark.e2e
def test_workflow_in_a_hostile_directory_with_hostile_titles(tmp_path: Path) -> None:
    """Data, eval files and the working directory all live under paths with spaces, `;`, `$()`, backticks
    and quotes; four pages have hostile titles. The whole workflow runs; no marker file appears anywhere;
    the titles arrive in the presplit shards as text."""
    import pyarrow.parquet as pq

    root = tmp_path / HOSTILE.replace("/", "_")
    inputs, work = root / "in;puts $(x)", root / "work dir; rm -rf ~"
    inputs.mkdir(parents=True)
    work.mkdir()
    dump = hostile_dump(inputs / "sample wiki;$(touch PWNED4).xml.bz2")
    wiki = shutil.copy(SAMPLE / "wiki.test.tokens", inputs / "wiki test `touch PWNED5`.tokens")
    config = tiny_config(model={"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32, "n_positions": 32},
                         train={"iters": 4, "save_interval": 2, "eval_interval": 2, "eval_iters": 1,
                                "micro_batch": 4},
                         tokenizer={"kind": "bpe", "vocab_size": 512, "min_frequency": 2},
                         generate={"prompts": ["A"], "max_new_tokens": 4})
    config["corpora"][0]["sources"] = [{"url": str(dump)}]
    config["eval"]["wiki103"]["source"] = {"url": str(wiki)}
    config["eval"]["lambada"]["enabled"] = False
    write_config(work, config)
    run_snakemake(work, "all")
    assert not list(tmp_path.rglob("PWNED*")) and not Path("/tmp/PWNED_title").exists()
    titles = set()
    for shard in sorted((work / "data/presplit/samplewiki").glob("*.parquet")):
        titles |= set(pq.read_table(shard, columns=["title"]).column("title").to_pylist())
    assert {"../../../../tmp/PWNED_title", "$(touch PWNED_t1); `touch PWNED_t2` | rm -rf x"} <= titles
    assert (work / "results/ppl_wiki103.txt").exists()
    made = {p.relative_to(work).parts[0] for p in work.iterdir()}
    assert made <= {"config.yaml", "data", "results", "checkpoints", "logs", ".snakemake"}, made


def test_published_checksums_are_configured_for_every_remote_download() -> None:
    """Every http(s) source of the shipped presets names a checksum (inline or a published list)."""
    missing = []
    for preset in sorted((REPO / "configs").glob("*.yaml")):
        cfg = yaml.safe_load(preset.read_text(encoding="utf-8"))
        sources = [s for c in cfg.get("corpora", []) for s in c["sources"]]
        sources += [cfg.get("tokenizer", {}).get(k) for k in ("encoder", "vocab")]
        sources += [cfg.get("eval", {}).get(k, {}).get("source") for k in ("wiki103", "lambada")]
        for s in filter(None, sources):
            if "://" in s["url"] and not any(s.get(k) for k in ("sha256", "sha1", "md5", "checksums_url")):
                missing.append(f"{preset.name}: {s['url']}")
    assert not missing, missing
