# Stage train: torchrun -m gpt2core.train over the manifest's shards. Declared outputs are only the summary
# and the metrics; step checkpoints live under CHECKPOINTS (not an output, so Snakemake never deletes them):
# a killed run resumes from the newest one when the workflow is rerun; a finished run is kept (outputs
# rewritten) when train reruns with the same config, and `--forcerun train` or a change that can alter the
# weights trains again from step 0 (see gpt2core/training/resume.py, gpt2core/training/retrain.py).
# The layout (config["train"] with dp and nproc_per_node resolved) and its checks are rules/common.smk's.
import json
import shlex


# torchrun from PATH (a conda env or an activated venv), else this Python's own torch.distributed.run, so
# `.venv/bin/snakemake` works without activating the environment.
PYTHON = shlex.quote(sys.executable)


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
        nnodes=config["train"]["nnodes"],
        rdzv_id=config["run_name"],
        rdzv=config["train"]["rdzv_endpoint"],
        omp=_omp_threads,
    threads: config["train"]["threads"]
    resources:
        # what a cluster executor (profiles/slurm) asks for: one GPU per rank of this node when on CUDA
        gpu=config["train"]["nproc_per_node"] if config["train"]["device"] == "cuda" else 0,
    conda:
        CONDA_ENV
    log:
        "logs/train/train.log",
    benchmark:
        "logs/benchmarks/train/train.tsv"
    # OMP_WAIT_POLICY=PASSIVE: spinning OpenMP threads made a step 3-8x slower on a busy 2-core machine
    # (median 1.65-4.2 s vs 0.55 s measured); set it in the environment to override.
    # One node: torchrun here (c10d rendezvous on localhost:0, as --standalone). Several nodes (train.nnodes
    # > 1): the job runs inside a SLURM allocation of nnodes nodes; srun starts one torchrun per node, all
    # meeting at train.rdzv_endpoint (empty: the allocation's first host, port 29500).
    shell:
        "EP={params.rdzv:q}; LAUNCH=; TORCHRUN=(torchrun);"
        " command -v torchrun >/dev/null || TORCHRUN=({PYTHON} -m torch.distributed.run);"
        " if [ {params.nnodes:q} -gt 1 ]; then"
        "  if [ -z \"${{SLURM_JOB_NODELIST:-}}\" ] || ! command -v srun >/dev/null; then"
        "   echo 'error: config: train.nnodes > 1 runs inside a SLURM allocation (srun); elsewhere start"
        " torchrun on each node yourself (docs/training.md: Tensor and data parallelism)' >&2; exit 1; fi;"
        "  LAUNCH=\"srun --nodes={params.nnodes} --ntasks-per-node=1 --kill-on-bad-exit=1\";"
        "  [ -n \"$EP\" ] || EP=$(timeout 60 scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1):29500;"
        " fi; [ -n \"$EP\" ] || EP=localhost:0;"
        " export OMP_NUM_THREADS={params.omp:q} OMP_WAIT_POLICY=${{OMP_WAIT_POLICY:-PASSIVE}};"
        " CMD=($LAUNCH \"${{TORCHRUN[@]}}\""
        " --nnodes {params.nnodes:q} --nproc-per-node {params.nproc:q} --rdzv-backend c10d"
        " --rdzv-endpoint \"$EP\" --rdzv-id {params.rdzv_id:q}"
        " -m gpt2core.train --manifest {input.manifest:q} --model {params.model:q} --train {params.train:q}"
        " --data-seed {params.data_seed:q} --checkpoints {params.checkpoints:q}"
        " --done {output.done:q} --metrics {output.metrics:q} --progress);"
        # the command line goes to the log only; the trainer's stderr (bar, messages) too; its stdout, a
        # progress line now and then, stays on the console
        " echo \"train: {params.nproc} x {params.nnodes} process(es) (train.nproc_per_node x train.nnodes); progress"
        " below, everything (command line, progress bar, messages) in \"{log:q};"
        " echo \"+ OMP_NUM_THREADS=$OMP_NUM_THREADS OMP_WAIT_POLICY=$OMP_WAIT_POLICY ${{CMD[*]@Q}}\" > {log:q};"
        " \"${{CMD[@]}}\" 2>> {log:q}"


rule loss_curve:
    input:
        metrics=f"{RESULTS}/train/metrics.jsonl",
    output:
        report(f"{RESULTS}/loss_curve.png", category="Training", caption="../workflow/report/loss_curve.rst"),
    params:
        run_name=config["run_name"],
    threads: 1
    conda:
        CONDA_ENV
    log:
        "logs/loss_curve/loss_curve.log",
    benchmark:
        "logs/benchmarks/loss_curve/loss_curve.tsv"
    script:
        f"{SCRIPTS}/loss_curve.py"
