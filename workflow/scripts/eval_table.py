"""rule eval_table: results/ppl_wiki103.json, results/lambada.json, results/train/{done.json,metrics.jsonl}
-> results/eval_table.html (report item)."""

from gpt2core.errors import run_cli
from gpt2core.eval.report import write_results_table

run_cli(lambda: write_results_table(snakemake.output[0], (snakemake.input.ppl or [None])[0],
                                    (snakemake.input.lambada or [None])[0], snakemake.params.run_name,
                                    snakemake.input.done, snakemake.input.metrics),
        snakemake.log[0])
