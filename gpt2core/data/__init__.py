"""The data side of wikigpt: dump download, extraction, sentence presplit, BPE, token shards and their reader.

The shard writer (`shards`) sits beside the reader the trainer uses (`loader`, and `blend` for several corpora).

Other stages need only `load_encoder` (tokenize text the way the shards were tokenized) and the manifest
format written by `gpt2core.data.manifest`.
"""

from gpt2core.data.encoder import Encoder, load_encoder

__all__ = ["Encoder", "load_encoder"]
