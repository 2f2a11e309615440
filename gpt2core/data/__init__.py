"""The data side of wikigpt: dump download, extraction, sentence presplit, BPE and token shards.

Other stages need only `load_encoder` (tokenize text the way the shards were tokenized) and the manifest
format written by `gpt2core.data.manifest`.
"""

from gpt2core.data.encoder import Encoder, load_encoder

__all__ = ["Encoder", "load_encoder"]
