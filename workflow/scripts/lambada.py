"""rule lambada: results/model/ + the LAMBADA jsonl -> results/lambada.json."""

import torch

from gpt2core.errors import run_cli
from gpt2core.eval.lambada import evaluate_lambada

torch.set_num_threads(snakemake.threads)
run_cli(lambda: evaluate_lambada(snakemake.params.model_dir, snakemake.input.eval, snakemake.output[0],
                                 batch_size=snakemake.params.batch_size, log_path=snakemake.log[0]),
        snakemake.log[0])
