"""rule ppl_wiki103: results/model/ + the WikiText eval file -> results/ppl_wiki103.{txt,json}."""

import torch

from gpt2core.errors import run_cli
from gpt2core.eval.wikitext import evaluate_wiki103

torch.set_num_threads(snakemake.threads)
run_cli(lambda: evaluate_wiki103(snakemake.params.model_dir, snakemake.input.eval, snakemake.output.txt,
                                 snakemake.output.json, overlap=snakemake.params.overlap,
                                 seq_len=snakemake.params.seq_len, batch_size=snakemake.params.batch_size,
                                 log_path=snakemake.log[0]), snakemake.log[0])
