"""A trained run -> the Hugging Face GPT-2 layout, one owner: `merge` (any tp/dp layout -> one full GPT),
`hf` (that layout, written and read back: `export_hf`, `load_hf`), `run` (a run's final checkpoint -> results/model/,
the one path `rule merge` and the tests take)."""
