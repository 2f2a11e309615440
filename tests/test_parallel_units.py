"""Fast checks of gpt2core.parallel / merge that need no process group: config errors before launch,
the q/k/v regrouping (SPEC merge table) and the merge of a hand-sharded state dict."""

from __future__ import annotations

import pytest
import torch
from test_train_helpers import model_config, train_config

from gpt2core.config import check_parallel_config, check_seq_len
from gpt2core.errors import WikiGPTError
from gpt2core.export.merge import merge_tp_state
from gpt2core.model import GPT, GPTConfig
from gpt2core.parallel import ParallelPlan, qkv_from_tp_layout, qkv_to_tp_layout

MODEL = {"n_head": 16, "n_embd": 1024, "vocab_multiple": 128, "seq_len": 1024, "n_positions": 1024}


def train(**kw: object) -> dict:
    return {"tp": 1, "dp": 1, "nproc_per_node": 1, "nnodes": 1, "sequence_parallel": False, **kw}


def test_a_valid_layout_passes() -> None:
    plan = check_parallel_config(model_config(**MODEL), train_config(**train(tp=2, dp=2, nproc_per_node=2, nnodes=2)),
                                 vocab_size=50257)
    assert plan == ParallelPlan(dp=2, tp=2, nnodes=2) and plan.world == 4


@pytest.mark.parametrize(("model", "tr", "message"), [
    ({"n_head": 12, "n_embd": 768}, train(tp=8, nproc_per_node=8), "model.n_head 12 is not divisible by train.tp 8"),
    ({"n_head": 4, "n_embd": 770}, train(tp=4, nproc_per_node=4), "model.n_embd 770 is not divisible by train.tp 4"),
    ({}, train(tp=2, dp=1, nproc_per_node=4), r"4 x 1 = 4 processes, but train.tp x train.dp = 2 x 1 = 2"),
    ({}, train(tp=2, dp=2, nproc_per_node=2, nnodes=1), r"2 x 1 = 2 processes.*2 x 2 = 4"),
    ({}, train(sequence_parallel=True), "sequence_parallel needs train.tp > 1"),
    ({}, train(half_residual=True, precision="fp32"), "train.half_residual .* needs precision fp16 or bf16, not fp32"),
])
def test_config_errors_name_the_keys(model: dict, tr: dict, message: str) -> None:
    with pytest.raises(WikiGPTError, match=message):
        check_parallel_config(model_config(**{**MODEL, **model}), train_config(**tr), vocab_size=50257)


@pytest.mark.parametrize(("given", "world", "dp", "nproc"), [
    ({"tp": 2}, None, 1, 2),  # tp alone: two processes, as torchrun/torchtitan users expect
    ({"tp": 2, "dp": 4, "nnodes": 2}, None, 4, 4),
    ({"tp": 2, "nproc_per_node": 8}, None, 4, 8),  # dp = the processes over tp
    ({"tp": 2, "nproc_per_node": 4, "nnodes": 2}, None, 4, 4),
    ({"tp": 2}, 6, 3, 6),  # the trainer: torchrun's world size over tp
    ({}, None, 1, 1),
])
def test_layout_follows_from_what_is_given(given: dict, world: int | None, dp: int, nproc: int) -> None:
    plan = ParallelPlan.from_train(train_config(**given), world)
    assert (plan.dp, plan.nproc_per_node) == (dp, nproc)


@pytest.mark.parametrize(("given", "message"), [
    ({"tp": 4, "nproc_per_node": 6}, "train.nproc_per_node x train.nnodes = 6 process\\(es\\), not a multiple of "
                                     "train.tp 4"),
    ({"tp": 3, "nnodes": 2}, r"train.tp x train.dp = 3 x 1 = 3 processes do not split evenly over train.nnodes 2"),
    ({"tp": 2, "dp": 3, "nproc_per_node": 2}, r"2 x 1 = 2 processes, but train.tp x train.dp = 2 x 3 = 6"),
])
def test_a_layout_that_cannot_fit_names_the_keys(given: dict, message: str) -> None:
    with pytest.raises(WikiGPTError, match=message):
        ParallelPlan.from_train(train_config(**given))


def test_torchrun_starting_another_number_of_processes_names_both() -> None:
    """The one check of torchrun's world size against the layout (gpt2core.config.ParallelPlan)."""
    ParallelPlan.from_train(train_config(tp=2, nproc_per_node=2), world=2)
    with pytest.raises(WikiGPTError, match=r"torchrun started 4 processes, train.tp x train.dp = 2 x 1 = 2"):
        ParallelPlan.from_train(train_config(tp=2, nproc_per_node=2), world=4)


def test_sequence_parallel_needs_a_divisible_sequence() -> None:
    check_seq_len(1024, ParallelPlan(tp=2, sequence_parallel=True))
    with pytest.raises(WikiGPTError, match="seq_len 1023 is not divisible by train.tp 2"):
        check_seq_len(1023, ParallelPlan(tp=2, sequence_parallel=True))


@pytest.mark.parametrize("tp", [1, 2, 4])
def test_qkv_regrouping_gives_each_rank_its_heads(tp: int) -> None:
    C = 8
    q, k, v = (torch.arange(C) + base for base in (100, 200, 300))
    grouped = qkv_to_tp_layout(torch.cat([q, k, v]), tp)
    per_rank = grouped.chunk(tp)
    for r, part in enumerate(per_rank):  # rank r holds [Q_r; K_r; V_r]
        sl = slice(r * C // tp, (r + 1) * C // tp)
        assert torch.equal(part, torch.cat([q[sl], k[sl], v[sl]]))
    assert torch.equal(qkv_from_tp_layout(grouped, tp), torch.cat([q, k, v]))
    w = torch.randn(3 * C, 5)
    assert torch.equal(qkv_from_tp_layout(qkv_to_tp_layout(w, tp), tp), w)


def test_merge_trims_the_tp_padding_and_regroups_qkv() -> None:
    cfg1 = GPTConfig.padded(50257, 128, 1, n_positions=8, n_layer=1, n_head=2, n_embd=8)
    cfg2 = GPTConfig.padded(50257, 128, 2, n_positions=8, n_layer=1, n_head=2, n_embd=8)
    assert (cfg1.padded_vocab_size, cfg2.padded_vocab_size) == (50304, 50432)
    torch.manual_seed(0)
    ref = {k: v for k, v in GPT(cfg1).state_dict().items() if k != "lm_head.weight"}
    sharded = dict(ref)  # what a tp=2 run saves: q/k/v grouped per rank, embedding padded to 50432
    sharded["wte.weight"] = torch.cat([ref["wte.weight"], torch.zeros(128, 8)])
    for key in ("h.0.attn.c_attn.weight", "h.0.attn.c_attn.bias"):
        sharded[key] = qkv_to_tp_layout(ref[key], 2)
    cfg, merged = merge_tp_state(sharded, cfg2, 2)
    assert cfg == cfg1
    for key, value in ref.items():
        assert torch.equal(merged[key], value), key
    assert merged["lm_head.weight"] is merged["wte.weight"]


def test_merge_refuses_a_mismatched_checkpoint() -> None:
    cfg2 = GPTConfig.padded(300, 64, 2, n_positions=8, n_layer=1, n_head=2, n_embd=8)
    sd = {k: v for k, v in GPT(cfg2).state_dict().items() if k != "lm_head.weight"}
    bad = {**sd, "h.0.mlp.c_fc.weight": torch.zeros(16, 8)}
    with pytest.raises(WikiGPTError, match=r"ck: h.0.mlp.c_fc.weight has shape \(16, 8\)"):
        merge_tp_state(bad, cfg2, 2, "ck")
    del sd["ln_f.bias"]
    with pytest.raises(WikiGPTError, match="'ln_f.bias' missing"):
        merge_tp_state(sd, cfg2, 2, "ck")


def test_every_tp_starts_from_the_tp1_init() -> None:
    from gpt2core.parallel import init_model

    kw = {"n_positions": 8, "n_layer": 1, "n_head": 2, "n_embd": 8}
    torch.manual_seed(5)
    plain = GPT(GPTConfig.padded(300, 128, 1, **kw)).state_dict()
    for tp in (1, 2, 4):
        model = init_model(GPTConfig.padded(300, 128, tp, **kw), seed=5)
        assert model.wte.weight.shape[0] == {1: 384, 2: 512, 4: 512}[tp]
        assert model.lm_head.weight is model.wte.weight
        for key, value in model.state_dict().items():
            assert torch.equal(value[: plain[key].shape[0]], plain[key]), (tp, key)
        assert not model.wte.weight[384:].any()


def test_resharding_reads_in_groups_bounded_by_bytes() -> None:
    """Resharding reads full tensors a group at a time (each rank forms the same groups, sorted by key):
    no group passes the budget unless a single tensor does, and every key is read exactly once."""
    from gpt2core.training.checkpoint.sharded import read_groups

    sizes = {f"k{i:02d}": s for i, s in enumerate([10, 60, 30, 100, 250, 5, 95, 1, 40])}
    groups = read_groups(sizes, budget=100)
    assert [k for g in groups for k in g] == sorted(sizes)
    assert all(sum(sizes[k] for k in g) <= 100 or len(g) == 1 for g in groups), groups
    assert ["k04"] in groups  # larger than the budget: alone
    assert groups == [["k00", "k01", "k02"], ["k03"], ["k04"], ["k05", "k06"], ["k07", "k08"]]
    assert read_groups(sizes, budget=10 ** 9) == [sorted(sizes)]
    assert read_groups({}, budget=100) == []
