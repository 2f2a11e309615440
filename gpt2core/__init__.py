"""gpt2core: the library behind wikigpt (data preparation, GPT-2 model, trainer, checkpoints,
generation and evaluation). It never imports the workflow (its rules, scripts or engine), so every stage also works as plain
Python."""

__version__ = "0.1.0"
