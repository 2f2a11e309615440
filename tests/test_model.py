"""The GPT-2 model: parameter count, init, causality, padded-vocabulary masking, KV cache, activation
checkpointing."""

from __future__ import annotations

import math

import torch

from gpt2core.model import GPT, GPTConfig, KVCache, lm_loss


def small(seed: int = 0, **kw: int) -> GPT:
    torch.manual_seed(seed)
    args = {"n_positions": 32, "n_layer": 2, "n_head": 4, "n_embd": 32, **kw}
    return GPT(GPTConfig.padded(301, 128, **args))


def test_gpt2_small_at_seq_512_has_124_082_688_parameters() -> None:
    with torch.device("meta"):
        model = GPT(GPTConfig.padded(50257, 128, n_positions=512))
    assert model.config.padded_vocab_size == 50304
    assert model.num_parameters() == 124_082_688


def test_tied_embedding_and_gpt2_init() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig.padded(50257, 128, n_positions=64, n_layer=8, n_head=4, n_embd=256))
    assert model.lm_head.weight is model.wte.weight
    assert abs(model.wte.weight.std().item() - 0.02) < 1e-3
    assert abs(model.h[0].mlp.c_fc.weight.std().item() - 0.02) < 1e-3
    resid = 0.02 / math.sqrt(2 * 8)
    for proj in (model.h[3].attn.c_proj, model.h[3].mlp.c_proj):
        assert abs(proj.weight.std().item() - resid) < 0.1 * resid
    assert model.h[0].attn.c_attn.bias.abs().sum() == 0
    assert torch.equal(model.h[0].ln_1.weight, torch.ones(256))


def test_padded_ids_have_minus_inf_and_no_loss_mass() -> None:
    model = small()
    idx = torch.randint(0, 301, (2, 16))
    logits = model(idx)
    assert logits.shape == (2, 16, 384)
    assert torch.isneginf(logits[..., 301:]).all() and torch.isfinite(logits[..., :301]).all()
    targets = torch.randint(0, 301, (2, 16))
    loss = lm_loss(logits, targets)
    ref = torch.nn.functional.cross_entropy(logits[..., :301].flatten(0, 1), targets.flatten())
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(model.wte.weight.grad).all()


def test_loss_mask_counts_only_unmasked_positions() -> None:
    model = small()
    idx, targets = torch.randint(0, 301, (1, 8)), torch.randint(0, 301, (1, 8))
    logits = model(idx)
    mask = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 1]])
    per_token = torch.nn.functional.cross_entropy(logits[0], targets[0], reduction="none")
    torch.testing.assert_close(lm_loss(logits, targets, mask), per_token[mask[0].bool()].mean())


def test_attention_is_causal() -> None:
    model = small().eval()
    a = torch.randint(0, 301, (1, 20))
    b = a.clone()
    b[0, 12:] = (b[0, 12:] + 7) % 301
    with torch.no_grad():
        torch.testing.assert_close(model(a)[:, :12], model(b)[:, :12])
        assert not torch.allclose(model(a)[:, 12:], model(b)[:, 12:])


def test_kv_cache_matches_full_forward() -> None:
    model = small(seed=1).eval()
    idx = torch.randint(0, 301, (3, 24))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache()
        parts = [model(idx[:, :10], cache, start_pos=0)]
        parts += [model(idx[:, t:t + 1], cache, start_pos=t) for t in range(10, 24)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    assert len(cache) == 24


def test_activation_checkpointing_gives_the_same_gradients() -> None:
    """Same gradients with the flag on, and the flag really checkpoints: every block's forward runs again
    during the backward (once per layer; without the flag, never). A pre-hook: the recompute stops early,
    once it has what the backward needs, so a block's own forward hook does not fire again."""
    idx, targets = torch.randint(0, 301, (2, 32)), torch.randint(0, 301, (2, 32))
    grads = []
    for flag in (False, True):
        model = small(seed=2)
        model.activation_checkpointing = flag
        forwards: list[bool] = []
        for block in model.h:
            block.register_forward_pre_hook(lambda *_, seen=forwards: seen.append(torch.is_grad_enabled()))
        loss = lm_loss(model(idx), targets)
        before = len(forwards)
        loss.backward()
        assert before == model.config.n_layer and len(forwards) - before == (model.config.n_layer if flag else 0)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)


def test_too_long_sequence_is_an_error() -> None:
    model = small()
    try:
        model(torch.zeros(1, 33, dtype=torch.long))
    except ValueError as exc:
        assert "n_positions 32" in str(exc)
    else:
        raise AssertionError("a 33-token input to a 32-position model must fail")


def test_cpu_attention_path_equals_sdpa() -> None:
    """The CPU training path with dropout computes the same attention as SDPA when nothing is dropped."""
    import torch.nn.functional as F

    from gpt2core.model import causal_attention_weights

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 17, 8, generator=g) for _ in range(3))
    ours = causal_attention_weights(q, k) @ v
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_cpu_dropout_distribution_scale_gradient_and_seed() -> None:
    from gpt2core.model import Dropout

    drop = Dropout(0.1).train()
    x = torch.ones(1000, 1000, requires_grad=True)
    torch.manual_seed(3)
    y = drop(x)
    frac = (y == 0).float().mean().item()
    assert abs(frac - 0.1) < 0.003, frac  # 1e6 draws: sd 3e-4
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.9))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * mask)/dx = mask
    torch.manual_seed(3)
    assert torch.equal(drop(x), y)  # the mask is a function of the torch RNG state: resumable
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_cpu_dropout_rate_holds_in_bf16() -> None:
    from gpt2core.model import Dropout

    torch.manual_seed(5)
    y = Dropout(0.1).train()(torch.ones(1000, 1000, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert abs((y == 0).float().mean().item() - 0.1) < 0.003
