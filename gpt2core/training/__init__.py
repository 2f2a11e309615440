"""Training, one job per module: the loop (`trainer`), the step and loss (`step`), distributed setup and the
parallelism hook, optimizer, LR schedule, fp16 loss scaling, gradient norm and clipping (plain and on a mesh),
checkpoints (`checkpoint/`: plain, sharded, integrity), metrics log, device peak FLOPs."""
