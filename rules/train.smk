# Stage train: torchrun -m gpt2core.train over the manifest's shards. Declared outputs are only the summary
# and the metrics; step checkpoints live under CHECKPOINTS (not an output, so Snakemake never deletes them):
# a killed run resumes from the newest one when the workflow is rerun, and after a finished run
# `--forcerun train` trains again from step 0 (see gpt2core/train.py).
import json


def _omp_threads(wildcards, threads):
    """OpenMP threads per rank: the job's threads shared by the ranks on this node."""
    return max(1, threads // config["train"]["nproc_per_node"])


rule train:
    input:
        manifest=manifest(),
    output:
        done=f"{RESULTS}/train/done.json",
        metrics=f"{RESULTS}/train/metrics.jsonl",
    params:
        model=json.dumps(config["model"], sort_keys=True),
        train=json.dumps(config["train"], sort_keys=True),
        data_seed=config["data"]["seed"],
        checkpoints=CHECKPOINTS,
        nproc=config["train"]["nproc_per_node"],
        omp=_omp_threads,
    threads: config["train"]["threads"]
    log:
        "logs/train/train.log",
    benchmark:
        "logs/benchmarks/train/train.tsv"
    # OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads made a step 3-8x slower on a busy 2-core machine
    # (median 1.65-4.2 s vs 0.55 s measured); set it in the environment to override.
    shell:
        "OMP_NUM_THREADS={params.omp:q} OMP_WAIT_POLICY=${{OMP_WAIT_POLICY:-PASSIVE}} torchrun --standalone --nproc-per-node {params.nproc:q}"
        " -m gpt2core.train --manifest {input.manifest:q} --model {params.model:q} --train {params.train:q}"
        " --data-seed {params.data_seed:q} --checkpoints {params.checkpoints:q}"
        " --done {output.done:q} --metrics {output.metrics:q} > {log:q} 2>&1"


rule loss_curve:
    input:
        metrics=f"{RESULTS}/train/metrics.jsonl",
    output:
        report(f"{RESULTS}/loss_curve.png", category="Training", caption="../workflow/report/loss_curve.rst"),
    params:
        run_name=config["run_name"],
    threads: 1
    log:
        "logs/loss_curve/loss_curve.log",
    benchmark:
        "logs/benchmarks/loss_curve/loss_curve.tsv"
    script:
        f"{SCRIPTS}/loss_curve.py"
