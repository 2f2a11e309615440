"""Window and mask arithmetic of the WikiText-103 method, and the scoring over those windows."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from test_eval_support import tiny_gpt

from gpt2core.eval.scoring import forward_logits_at, gpt_logits_at, target_losses
from gpt2core.eval.wikitext import perplexities, score_tokens
from gpt2core.eval.windows import WindowPlan


def reference_scored_targets(n_tokens: int, seq_len: int, overlap: int) -> Counter:
    """Megatron-LM's `_LMDataset.__len__`/`__getitem__` transcribed: absolute indices of scored targets."""
    total_targets = n_tokens - 1
    targets = max(total_targets - overlap, 0)
    total_sequences = max(math.ceil(targets / overlap) + 1, 1)
    scored: Counter = Counter()
    for idx in range(total_sequences):
        start = idx * overlap
        num_tokens = len(range(start, min(start + seq_len + 1, n_tokens)))
        pad_mask = [1] * num_tokens + [0] * (seq_len + 1 - num_tokens)
        pad_mask = np.array(pad_mask[1:])
        if overlap != seq_len and idx != 0:
            pad_mask[:-overlap] *= 0
        for j in np.nonzero(pad_mask)[0]:
            scored[start + int(j) + 1] += 1
    return scored


def plan_scored_targets(plan: WindowPlan, batch_size: int = 3) -> Counter:
    tokens = torch.arange(plan.n_tokens)  # token value == its index, so targets name themselves
    scored: Counter = Counter()
    for ks in plan.batches(batch_size):
        _, _, targets, mask = plan.batch(tokens, ks)
        scored.update(targets[mask].tolist())
    return scored


def test_hand_computed_case() -> None:
    # 10 tokens t0..t9, seq_len 4, overlap 2: targets t1..t9, each scored once.
    plan = WindowPlan(10, 4, 2)
    tokens = torch.arange(10)
    inputs, positions, targets, mask = plan.batch(tokens, [0])
    assert inputs.tolist() == [[0, 1, 2, 3]] and targets.tolist() == [[1, 2, 3, 4]]  # first window: all 4
    assert mask.tolist() == [[True] * 4] and positions.tolist() == [[0, 1, 2, 3]]
    inputs, positions, targets, mask = plan.batch(tokens, [1, 2, 3])
    assert inputs.tolist() == [[2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 0]]  # t9 is only a target; 0 pads
    assert positions.tolist() == [[2, 3]] * 3  # later windows: the last `overlap` positions only
    assert targets.tolist() == [[5, 6], [7, 8], [9, 0]]
    assert mask.tolist() == [[True, True], [True, True], [True, False]]  # t9 ends the text; the rest is padding
    assert plan.n_windows == 4 and plan.reference_windows == 5  # the reference's 5th window scores nothing
    assert plan_scored_targets(plan) == Counter(range(1, 10))


@pytest.mark.parametrize(("n", "seq_len", "overlap"),
                         [(2, 4, 2), (5, 4, 4), (6, 4, 4), (100, 16, 4), (101, 16, 5), (37, 8, 1), (17, 16, 16),
                          (1000, 64, 32), (33, 32, 32), (34, 32, 32)])
def test_every_target_scored_exactly_once_as_in_the_reference(n: int, seq_len: int, overlap: int) -> None:
    plan = WindowPlan(n, seq_len, overlap)
    ours = plan_scored_targets(plan)
    assert ours == Counter(range(1, n))
    assert ours == reference_scored_targets(n, seq_len, overlap)


def test_bad_plans_are_rejected() -> None:
    with pytest.raises(ValueError):
        WindowPlan(1, 4, 2)
    with pytest.raises(ValueError):
        WindowPlan(10, 4, 5)


def test_fast_logits_equal_the_models_own_forward() -> None:
    model = tiny_gpt(301, n_positions=32)  # padded to 384: the padded logits are -inf in forward
    idx = torch.randint(0, 301, (3, 24), generator=torch.Generator().manual_seed(0))
    positions = torch.tensor([[0, 5, 23], [1, 2, 3], [20, 21, 22]])
    with torch.no_grad():
        fast = gpt_logits_at(model)(idx, positions)
        plain = forward_logits_at(model)(idx, positions)
    assert fast.shape == (3, 3, 301)
    torch.testing.assert_close(fast, plain[..., :301], atol=1e-5, rtol=0)
    assert torch.isneginf(plain[..., 301:]).all()


def brute_force_loss(model: torch.nn.Module, tokens: torch.Tensor, seq_len: int, overlap: int) -> float:
    """One window at a time through the model's plain forward, with the reference's masks."""
    n = tokens.numel()
    total = 0.0
    for idx in range(max(math.ceil(max(n - 1 - overlap, 0) / overlap) + 1, 1)):
        start = idx * overlap
        chunk = tokens[start: start + seq_len + 1]
        if chunk.numel() < 2:
            continue
        with torch.no_grad():
            logits = model(chunk[:-1].unsqueeze(0))[0, :, :301]
        losses = torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="none")
        keep = torch.ones_like(losses, dtype=torch.bool)
        if idx != 0 and overlap != seq_len:
            keep[: seq_len - overlap] = False
        total += float(losses[keep].double().sum())
    return total


@pytest.mark.parametrize("batch_size", [1, 4])
def test_score_tokens_matches_brute_force(batch_size: int) -> None:
    model = tiny_gpt(301, n_positions=32)
    tokens = torch.randint(0, 301, (203,), generator=torch.Generator().manual_seed(1))
    score = score_tokens(gpt_logits_at(model), tokens, seq_len=32, overlap=8, batch_size=batch_size,
                         vocab_size=301)
    assert score.scored == 202 and score.windows == 1 + math.ceil((202 - 32) / 8)
    assert score.loss_sum == pytest.approx(brute_force_loss(model, tokens, 32, 8), rel=1e-5)


def test_perplexity_formulas() -> None:
    token_ppl, word_ppl = perplexities(loss_sum=100.0, n_bpe=51, n_orig=41)
    assert token_ppl == pytest.approx(math.exp(2.0)) and word_ppl == pytest.approx(math.exp(2.5))
    assert perplexities(1e6, 2, 2) == (math.inf, math.inf)


def test_target_losses_ignore_padded_vocabulary() -> None:
    logits = torch.tensor([[[0.0, 0.0, 50.0]]])  # id 2 is padding: never counted
    assert target_losses(logits, torch.tensor([[0]]), vocab_size=2).item() == pytest.approx(math.log(2))
