"""Training, one job per module: the loop (`trainer`), what a run is built from (`build`: model, levers,
loss), the step and loss (`step`), where a run starts (`resume`: fresh, resumed, a finished run kept, with
`retrain`'s note), distributed and device setup and the parallelism hook (`distributed`), optimizer, LR
schedule, fp16 loss scaling, gradient norm and clipping (`grads`, plain and on a mesh), checkpoints
(`checkpoint/`: plain, sharded, integrity), metrics log, device peak FLOPs."""
