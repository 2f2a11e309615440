"""The trainer's parts, one job per module: distributed setup and the parallelism hook, optimizer, LR
schedule, fp16 loss scaling, gradient norm and clipping, checkpoints, metrics log, device peak FLOPs."""
