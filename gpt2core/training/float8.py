"""`train.float8`: the blocks' linears (attention qkv and projection, MLP up and down: 85M of GPT-2 small's
124M parameters, nearly all of its matmul FLOPs but the output layer's) run as float8 matmuls through torchao's
float8 training, with dynamic scaling per row ("rowwise", what torchao recommends for accuracy) or per tensor.

Why: an H100 multiplies float8 at twice its bf16 rate, and the matmuls are half of a step. The weights stay
fp32 master weights with the same names (checkpoints and exports do not change); only each matmul casts its
inputs to float8 on the way in. The tied output layer stays bf16 (it is also the input embedding). MFU is still
counted against the bf16 peak, so the table stays comparable. torchao is an optional extra, imported only here.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from gpt2core.errors import WikiGPTError
from gpt2core.training.optional_packages import TORCHAO, import_optional


def is_block_linear(module: nn.Module, fqn: str) -> bool:
    """The linears inside the transformer blocks whose dims float8 matmuls take (multiples of 16)."""
    return (isinstance(module, nn.Linear) and fqn.startswith("h.")
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def apply_float8(model: nn.Module, recipe: str, device: torch.device, emulate: bool = False) -> int:
    """Swap the block linears of `model` for torchao's Float8Linear (same parameters); returns how many.
    `emulate`: torchao's float8 emulation in fp32 arithmetic (tests on CPU); else a CUDA sm89+ device."""
    if not emulate:
        if device.type != "cuda":
            raise WikiGPTError(f"config: train.float8 needs a CUDA device (float8 matmuls); this run is on "
                               f"{device.type}")
        if torch.cuda.get_device_capability(device) < (8, 9):
            raise WikiGPTError(f"config: train.float8 needs a GPU with float8 matmuls (sm89+: Ada, Hopper or "
                               f"newer); {torch.cuda.get_device_name(device)} is not one")
    float8 = import_optional("float8", TORCHAO, "torchao.float8")
    config = float8.Float8LinearConfig.from_recipe_name(recipe)
    if emulate:
        config = dataclasses.replace(config, emulate=True)
    float8.convert_to_float8_training(model, config=config, module_filter_fn=is_block_linear)
    return sum(type(m).__name__ == "Float8Linear" for m in model.modules())
