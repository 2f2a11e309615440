"""Training FLOPs per token (SPEC: 6N + 12 L H Q T) and the device's dense peak, for MFU."""

from __future__ import annotations

import os

import torch

from gpt2core.model import GPTConfig

# Dense bf16/fp16 tensor-core peaks (SPEC "Speed anchors"), TFLOP/s, by a substring of the device name; the
# first key found in the name wins, so the PCIe and NVL H100s (lower clocks) come before the SXM one.
_PEAKS_16 = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0, "A100": 312.0, "4090": 165.0,
             "2080 Ti": 53.8, "L40S": 362.0, "A10G": 125.0, "V100": 125.0, "T4": 65.0}


def flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    """6 * (non-embedding params + tied token embedding) + 12 * L * H * Q * T."""
    C, L = cfg.n_embd, cfg.n_layer
    n = cfg.padded_vocab_size * C + L * (12 * C * C + 13 * C) + 2 * C
    return 6.0 * n + 12.0 * L * cfg.n_head * (C // cfg.n_head) * seq_len


def peak_flops(device: torch.device, precision: str) -> float | None:
    """Peak FLOP/s of one device, or None when unknown (CPU): WIKIGPT_PEAK_TFLOPS overrides."""
    if os.environ.get("WIKIGPT_PEAK_TFLOPS"):
        return float(os.environ["WIKIGPT_PEAK_TFLOPS"]) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in _PEAKS_16.items():
        if key in name:
            return tflops * 1e12 * (1.0 if precision in ("fp16", "bf16") else 0.5)  # fp32 runs as TF32
    return None
