"""Snakemake script for rule download (see gpt2core.data.download)."""

from gpt2core.data.download import Transfer, download
from gpt2core.errors import run_cli


def main() -> None:
    limits = Transfer.from_limits(snakemake.params.get("limits"))
    digest = download(dict(snakemake.params.source), snakemake.output[0], limits)
    with open(snakemake.log[0], "a", encoding="utf-8") as log:
        log.write(f"{snakemake.params.source['url']} -> {snakemake.output[0]} ({digest or 'no checksum'})\n")


run_cli(main, snakemake.log[0])
