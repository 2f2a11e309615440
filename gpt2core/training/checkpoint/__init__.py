"""Step checkpoints, one owner: writing, finding and loading them, and checking they are what was written.

`plain` (one process: safetensors + meta.json), `sharded` (torch.distributed.checkpoint, every rank its own
shards), `integrity` (checksums, and the allow-list for DCP's pickled metadata), `dcp_read` (reading DCP
without running code from it), `io` (writes whose full-disk failure surfaces as the OSError it is).
Nothing is imported here, so importing one part does not pull in torch.distributed for another.
"""
