"""`python -m gpt2core.train`: the GPT-2 trainer `rule train` launches through torchrun.

The entry point only: arguments (the config's model and train sections, typed once here), the run's lock
(one trainer per checkpoint directory) and `Trainer(...).run()`; the trainer itself is
gpt2core.training.trainer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from gpt2core.config import ModelConfig, TrainConfig
from gpt2core.errors import WikiGPTError, run_cli
from gpt2core.training.distributed import shutdown
from gpt2core.training.run_lock import hold_run_lock
from gpt2core.training.trainer import RunPaths, Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gpt2core.train", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True, type=Path)
    p.add_argument("--model", required=True, help="config['model'] as JSON (all keys, defaults filled)")
    p.add_argument("--train", required=True, help="config['train'] as JSON (all keys, defaults filled)")
    p.add_argument("--data-seed", required=True, type=int, help="config['data']['seed']: the order of the windows")
    p.add_argument("--checkpoints", required=True, type=Path, help="checkpoints/<run_name>")
    p.add_argument("--done", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--progress", action="store_true",
                   help="also print a progress line to stdout now and then (rule train: the console)")
    return p.parse_args(argv)


def _json_arg(text: str, name: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WikiGPTError(f"--{name}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise WikiGPTError(f"--{name}: expected a JSON object")
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> None:
        paths = RunPaths(args.manifest, args.checkpoints, args.done, args.metrics, workdir=Path.cwd())
        # the global rank 0 holds the run's lock (torchrun stops the other ranks when it fails to get it)
        lock = hold_run_lock(args.checkpoints) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()
        with lock:
            trainer = Trainer(ModelConfig.from_dict(_json_arg(args.model, "model")),
                              TrainConfig.from_dict(_json_arg(args.train, "train")), args.data_seed, paths)
            try:
                trainer.run(sys.stdout if args.progress else None)
            finally:
                shutdown()

    run_cli(run)


if __name__ == "__main__":
    main()
