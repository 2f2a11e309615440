"""Who owns what, checked statically: imports in gpt2core run one way, the library never names the workflow,
and the typed config sections match the schema key for key (no default restated in code)."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import yaml

from gpt2core.config import ModelConfig, ParallelPlan, TrainConfig
from gpt2core.errors import WikiGPTError

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "gpt2core"
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text(encoding="utf-8"))

# the layers, lowest first: a module may import its own layer and those below it, never one above
BASICS = {"config", "errors", "fsutil", "vocab", "watch", "model_limits"}
LOWER = {"model", "parallel", "data"}
TRAINING = {"training", "export"}


def _layer(module: str) -> int:
    head = module.split(".")[0]
    for rank, layer in enumerate((BASICS, LOWER, TRAINING)):
        if head in layer:
            return rank
    return 3  # the entries and stage modules: train, generate, eval, plots


def _modules() -> dict[str, set[str]]:
    """gpt2core module (dotted, without the package prefix) -> the gpt2core modules it imports."""
    graph = {}
    for path in sorted(LIB.rglob("*.py")):
        parts = path.relative_to(LIB).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        imports = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            imports |= {n.removeprefix("gpt2core.") for n in names if n.startswith("gpt2core.")}
        graph[name] = imports
    return graph


def test_imports_run_one_way() -> None:
    upward = [f"{mod} -> {dep}" for mod, deps in _modules().items() for dep in deps
              if mod != "__init__" and _layer(dep) > _layer(mod)]
    assert not upward, "imports against the direction entry -> training/export -> model, parallel, data -> basics: " \
                       + ", ".join(upward)


def test_config_and_model_stay_free_of_what_they_must_not_know() -> None:
    graph = _modules()
    assert graph["config"] <= {"errors", "vocab"}
    assert not any(dep.startswith(("parallel", "training")) for dep in graph["model"])
    for name in ("config", "model"):
        tree = ast.parse((LIB / f"{name}.py").read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        if name == "config":
            assert not any(m.split(".")[0] == "torch" for m in imported), "config.py runs at every DAG build"
        else:
            assert not any(m.startswith("torch.distributed") for m in imported)


def test_the_library_never_names_the_workflow_engine() -> None:
    named = [str(p.relative_to(REPO)) for p in LIB.rglob("*.py") if "snakemake" in p.read_text(encoding="utf-8").lower()]
    assert not named, f"gpt2core speaks of the workflow, not of Snakemake: {named}"


@pytest.mark.parametrize(("section", "cls"), [("model", ModelConfig), ("train", TrainConfig)])
def test_typed_sections_match_the_schema_key_for_key(section: str, cls: type) -> None:
    """Every schema key is a field; a field is optional (None) exactly where the schema has no default."""
    props = SCHEMA["properties"][section]["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == set(props)
    optional = {name for name, f in fields.items() if f.default is None}
    assert optional == {name for name, p in props.items() if "default" not in p}


def test_a_section_round_trips_and_refuses_unknown_or_missing_keys() -> None:
    from test_train_helpers import full_config

    train = full_config(train={"loss_chunk": 256})["train"]
    assert TrainConfig.from_dict(train).to_dict() == train  # what checkpoints store and compare
    with pytest.raises(WikiGPTError, match=r"^config: unknown key 'lr_max' in train$"):
        TrainConfig.from_dict({**train, "lr_max": 1.0})
    with pytest.raises(WikiGPTError, match=r"^config: train\.precision is missing"):
        TrainConfig.from_dict({k: v for k, v in train.items() if k != "precision"})
    with pytest.raises(TypeError, match="missing .* required"):
        ModelConfig(n_layer=2)


def test_the_layout_is_resolved_once_and_written_back() -> None:
    from test_train_helpers import train_config

    plan = ParallelPlan.from_train(train_config(tp=2, nnodes=2, dp=2))
    assert (plan.world, plan.nproc_per_node) == (4, 2)
    assert train_config(tp=2).with_layout(ParallelPlan.from_train(train_config(tp=2))).to_dict()["dp"] == 1
