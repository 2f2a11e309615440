"""The data path at scale (issue 17): a multi-part dump of >= --gb GB of XML built from the shared enwiki pages,
through the real DAG, stage by stage, and the projection for full enwiki on 16 cores.

Builds `--parts` bz2 parts from the excerpt's 206 pages copied again and again, each copy with new page ids
and titles (`Title (copy k)`), so no page is dropped as a duplicate; then runs Snakemake on them (file://
download, extract, presplit, tokenizer = OpenAI's GPT-2 BPE, split_plan, tokenize, gather), one stage at a
time (its output files as targets), and prints per stage:
  wall      seconds of the stage (all its jobs, --cores at once)
  MB/s/core MB of dump XML per CPU-second of the stage (getrusage of every process under Snakemake, less
            Snakemake's own start, measured by a run with nothing to do)
  RSS       the largest peak RSS of one job of the stage
Anchor: WikiExtractor as the seed ran it (its template pre-pass over the part, HTML escaping), on one part,
one worker, in the same run, against the options the extract stage uses now.
Projection: full enwiki (~95 GB of XML in ~27 parts) on 16 cores: extract in rounds of parts, each part as
fast as its workers or its one reader process (measured: bz2 and cutting pages), the other stages as their
CPU-seconds spread over 16 cores (one-job stages: their CPU-seconds), with the assumptions printed beside it.

    python benchmarks/bench_scale.py [--gb 1.0] [--parts 4] [--cores N] [--workdir DIR] [--keep]
Below ~0.5 GB the jobs' fixed starts dominate and the projection is rough (--gb 0.05 checks the script).
Needs ../shared/data (the enwiki excerpt and gpt2_bpe). Measured on a shared machine: say so with its figures.
"""

from __future__ import annotations

import argparse
import bz2
import csv
import json
import math
import multiprocessing as mp
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DUMP = SHARED / "enwiki/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
BPE = SHARED / "gpt2_bpe"
STAGES = ["download", "extract", "presplit", "tokenizer", "split_plan", "tokenize", "gather"]
ENWIKI_GB, ENWIKI_PARTS, TARGET_CORES = 95.0, 27, 16
EXTRACT_THREADS = 8  # rules/extract.smk: threads (WikiExtractor --processes) of a wikipedia part
_TITLE = re.compile(r"<title>([^<]*)</title>")
_ID = re.compile(r"<id>(\d+)</id>")


def excerpt_pages() -> tuple[str, list[str], str]:
    """(head up to the first page, the pages, the tail) of the shared excerpt."""
    xml = bz2.decompress(DUMP.read_bytes()).decode("utf-8")
    first = xml.index("  <page>")
    last = xml.rindex("</page>") + len("</page>\n")
    pages = [p + "</page>\n" for p in xml[first:last].split("</page>\n") if p.strip()]
    return xml[:first], pages, xml[last:]


def copy_of(page: str, k: int) -> str:
    """Page copy `k`: its first <id> (the page id) moved to a range of its own, its title made unique."""
    page = _ID.sub(lambda m: f"<id>{k * 10_000_000 + int(m.group(1))}</id>", page, count=1)
    return _TITLE.sub(lambda m: f"<title>{m.group(1)} (copy {k})</title>", page, count=1)


def write_part(args: tuple[Path, str, list[str], str, int, int, int]) -> tuple[Path, int]:
    path, head, pages, tail, first_copy, copies, level = args
    size = 0
    with bz2.open(path, "wt", encoding="utf-8", compresslevel=level) as fh:
        fh.write(head)
        for k in range(first_copy, first_copy + copies):
            block = "".join(copy_of(p, k) for p in pages)
            size += len(block.encode("utf-8"))
            fh.write(block)
        fh.write(tail)
    return path, size


def build_dump(folder: Path, gb: float, parts: int, cores: int) -> tuple[list[Path], int]:
    head, pages, tail = excerpt_pages()
    per_copy = sum(len(p.encode("utf-8")) for p in pages)
    copies = max(1, math.ceil(gb * 1e9 / parts / per_copy))
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"enwiki-bench-pages-articles{i + 1}.xml-p{i}.bz2", head, pages, tail, i * copies + 1,
             copies, 1) for i in range(parts)]
    with mp.Pool(min(cores, parts)) as pool:
        made = pool.map(write_part, jobs)
    return [p for p, _ in made], sum(s for _, s in made)


def config_for(parts: list[Path], shards: int) -> dict:
    sha = {"encoder.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
           "vocab.bpe": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"}
    return {
        "corpora": [{"name": "enwiki", "kind": "wikipedia", "lang": "en",
                     "sources": [{"url": f"file://{p}"} for p in parts]}],
        "presplit": {"shards": shards, "split_sentences": True, "min_chars": 200},
        "tokenizer": {"kind": "gpt2",
                      "encoder": {"url": f"file://{BPE / 'encoder.json'}", "sha256": sha["encoder.json"]},
                      "vocab": {"url": f"file://{BPE / 'vocab.bpe'}", "sha256": sha["vocab.bpe"]}},
        "data": {"split": [949, 50, 1], "seed": 1234, "dtype": "uint16"},
        "eval": {"wiki103": {"decontaminate": False}},
    }


def stage_targets(stage: str, parts: list[Path], shards: int) -> list[str]:
    """The files that stage `stage` makes (its dependencies are made by the stages before it)."""
    ids = [f"{i:05d}" for i in range(shards)]
    return {
        "download": [f"data/downloads/enwiki/{p.name}" for p in parts]
                    + [f"data/downloads/tokenizer/{n}" for n in ("encoder.json", "vocab.bpe")],
        "extract": [f"data/extract/enwiki/{p.name}" for p in parts],
        "presplit": [f"data/presplit/enwiki/{i}.parquet" for i in ids],
        "tokenizer": ["results/tokenizer/tokenizer.json"],
        "split_plan": ["data/tokens/enwiki/split_plan.json"],
        "tokenize": [f"data/tokens/enwiki/{i}/stats.json" for i in ids],
        "gather": ["results/data/manifest.json"],
    }[stage]


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of `cmd` and every process under it (each waited for, so counted by the kernel)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=6 * 3600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:8])} ... failed:\n{proc.stderr[-4000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def snakemake(work: Path, targets: list[str], cores: int) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores",
            str(cores), *targets]


def stage_jobs(work: Path, stage: str) -> list[dict]:
    """Snakemake's benchmark rows of every job of `stage` (s, max_rss in MB, cpu_time in s)."""
    rows = []
    for tsv in sorted((work / "logs/benchmarks" / stage).rglob("*.tsv")):
        with open(tsv, encoding="utf-8") as fh:
            row = next(csv.DictReader(fh, delimiter="\t"))
        rows.append({"s": float(row["s"]), "rss_mb": float(row["max_rss"]) if row["max_rss"] != "NA" else 0.0,
                     "cpu_s": float(row["cpu_time"]) if row["cpu_time"] != "NA" else 0.0})
    return rows


def extract_anchor(part: Path, work: Path) -> dict[str, float]:
    """CPU seconds of WikiExtractor on one part with one worker: as the seed ran it (the anchor), as extract
    runs it, and with no template expansion at all (what expanding the table costs; it loses their text)."""
    from gpt2core.data.templates import write_template_file

    templates = write_template_file(work / "templates.xml")
    base = [sys.executable, "-m", "wikiextractor.WikiExtractor", str(part), "--json", "--processes", "1", "-q"]
    runs = {"seed": [], "ours": ["--html-safe", "", "--templates", str(templates)],
            "no templates": ["--html-safe", "", "--no-templates"]}
    seconds = {}
    for name, extra in runs.items():
        out = work / f"anchor-{name.replace(' ', '-')}"
        seconds[name] = timed(base + ["-o", str(out)] + extra)[1]
        shutil.rmtree(out)
    return seconds


def reader_rate(part: Path) -> float:
    """MB of XML per CPU-second that WikiExtractor's one reader process decompresses and cuts into pages: the
    most one extract job can do, however many workers it has."""
    import wikiextractor.WikiExtractor as we

    we.templateNamespace = "Template"  # as its siteinfo scan sets it; else every page is skipped
    start = time.process_time()
    for _page in we.collect_pages(we.decode_open(str(part))):
        pass
    seconds = time.process_time() - start
    return xml_size(part) / 1e6 / seconds


def xml_size(part: Path) -> int:
    with bz2.open(part, "rb") as fh:
        return sum(len(block) for block in iter(lambda: fh.read(1 << 20), b""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gb", type=float, default=1.0, help="GB of dump XML to build (default 1.0)")
    ap.add_argument("--parts", type=int, default=4, help="dump parts (default 4)")
    ap.add_argument("--shards", type=int, default=0, help="presplit shards (default 2 per core)")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-anchor", action="store_true", help="skip the one-part WikiExtractor anchor")
    args = ap.parse_args()
    if not DUMP.exists():
        sys.exit(f"needs {DUMP}")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        parts, xml_bytes = build_dump(work / "dump", args.gb, args.parts, args.cores)
        xml_mb = xml_bytes / 1e6
        print(f"built {len(parts)} parts, {xml_mb:,.0f} MB of XML ({sum(p.stat().st_size for p in parts) / 1e6:,.0f}"
              f" MB bz2) in {time.perf_counter() - start:.0f} s; cores {args.cores} (load average "
              f"{os.getloadavg()[0]:.1f} at the start)")
        shards = args.shards or 2 * args.cores
        (work / "config.yaml").write_text(yaml.safe_dump(config_for(parts, shards), sort_keys=False))
        results = {}
        print(f"{'stage':<11}{'jobs':>5}{'wall s':>9}{'cpu s':>9}{'MB/s/core':>11}{'max RSS MB':>12}"
              "   (MB of dump XML; cpu: the stage's processes, less Snakemake's own start)")
        measured = {stage: timed(snakemake(work, stage_targets(stage, parts, shards), args.cores))
                    for stage in STAGES}
        overhead = timed(snakemake(work, stage_targets("gather", parts, shards), args.cores))[1]  # nothing to do
        for stage, (wall, cpu) in measured.items():
            jobs = stage_jobs(work, stage)
            cpu = max(cpu - overhead, 1e-3)
            rate = xml_mb / cpu
            rss = max((j["rss_mb"] for j in jobs), default=0.0)
            results[stage] = {"jobs": len(jobs), "wall_s": wall, "cpu_s": cpu, "mb_per_cpu_s": rate,
                              "max_rss_mb": rss}
            print(f"{stage:<11}{len(jobs):>5}{wall:>9.1f}{cpu:>9.1f}{rate:>11.2f}{rss:>12.0f}")
        extracted = sum(f.stat().st_size for f in (work / "data/extract").rglob("wiki_*")) / 1e6
        print(f"presplit on the extracted text: {extracted:,.0f} MB of JSON lines, "
              f"{extracted / results['presplit']['cpu_s']:.1f} MB/s per core (goal >= 10); Snakemake's own start "
              f"{overhead:.1f} CPU-s a stage, taken off")
        manifest = json.loads((work / "results/data/manifest.json").read_text())
        tokens = sum(s["tokens"] for s in manifest["splits"].values())
        docs = sum(s["documents"] for s in manifest["splits"].values())
        print(f"dump to shards: {sum(r['wall_s'] for r in results.values()):.0f} s wall for {xml_mb:,.0f} MB; "
              f"{docs:,} documents, {tokens:,} tokens; markup left {manifest['corpora'][0]['markup']}")
        if not args.no_anchor:
            anchor = extract_anchor(parts[0], work)
            part_mb = xml_mb / len(parts)
            print(f"anchor, WikiExtractor on one {part_mb:,.0f} MB part, one worker, CPU time:")
            for name, sec in anchor.items():
                print(f"  {name:<13}{sec:>7.1f} s  {part_mb / sec:>6.2f} MB/s   {anchor['seed'] / sec:.2f}x the seed's")
        reader = reader_rate(parts[0])
        print(f"WikiExtractor's reader (bz2 + cutting pages, one process a job): {reader:.1f} MB/s per CPU-second")
        project(results, reader, xml_mb)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def extract_minutes(worker_rate: float, reader: float, threads: int) -> tuple[float, str]:
    """Extract's wall on TARGET_CORES cores: one job a part (the smallest unit) with `threads` workers,
    TARGET_CORES // threads jobs at once in rounds; a job goes as fast as its workers or its one reader."""
    at_once = max(1, TARGET_CORES // threads)
    rounds = math.ceil(ENWIKI_PARTS / at_once)
    per_job = min(threads * worker_rate, reader)
    part_mb = ENWIKI_GB * 1e3 / ENWIKI_PARTS
    bound = "reader" if reader < threads * worker_rate else "workers"
    return rounds * part_mb / per_job / 60, (f"{rounds} rounds of {at_once} parts, {threads} workers each, "
                                            f"{per_job:.0f} MB/s a part ({bound}-bound)")


def project(results: dict, reader: float, xml_mb: float) -> None:
    """Full enwiki on TARGET_CORES cores from the per-core rates measured here."""
    full_mb = ENWIKI_GB * 1e3
    part_mb = full_mb / ENWIKI_PARTS
    print(f"\nprojection: enwiki, {ENWIKI_GB:.0f} GB of XML in {ENWIKI_PARTS} parts of ~{part_mb / 1e3:.1f} GB, on "
          f"{TARGET_CORES} cores")
    # a job's fixed start (Python, imports), taken as the tokenizer job's CPU (GPT-2's files: no corpus work),
    # comes off every job before scaling to enwiki: at small --gb it would otherwise dominate one-job stages
    fixed = results["tokenizer"]["cpu_s"]
    total = 0.0
    for stage, r in results.items():
        if r["cpu_s"] <= 0:
            continue
        variable = max(r["cpu_s"] - r["jobs"] * fixed, 0.05 * r["cpu_s"])
        r = dict(r, mb_per_cpu_s=xml_mb / variable)
        cpu = full_mb / r["mb_per_cpu_s"]
        spread = cpu / TARGET_CORES
        if stage == "extract":
            minutes, note = extract_minutes(r["mb_per_cpu_s"], reader, EXTRACT_THREADS)
            seconds = minutes * 60
            for threads in (2, 4):
                alt, alt_note = extract_minutes(r["mb_per_cpu_s"], reader, threads)
                note += f"; at {threads} workers a part {alt:.1f} min ({alt_note.split(', ', 1)[0]})"
        elif stage == "tokenizer":
            seconds = results["tokenizer"]["cpu_s"]  # kind gpt2: two files to tokenizer.json, whatever the corpus
            cpu = seconds
            note = "GPT-2's files, the same work whatever the corpus"
        elif stage in ("split_plan", "gather"):
            seconds = cpu + fixed  # one job: its work scaled with the data, plus its start
            note = "one job"
        elif stage == "download":
            seconds = spread
            note = "a copy per part, in parallel"
        else:
            seconds = spread
            note = f"{TARGET_CORES}+ shards keep every core busy"
        total += seconds
        print(f"  {stage:<11}{seconds / 60:>7.1f} min   ({cpu / 3600:.1f} CPU-hours; {note})")
    print(f"  {'total':<11}{total / 60:>7.1f} min   goal: under 60 min")
    print("  assumes: per-core rates as measured here (a loaded 2-core machine measures low), the same page mix "
          "as the excerpt (it has more short and non-article pages than enwiki), every stage's jobs spread over "
          "all cores (presplit.shards >= 16) and extract's parts in rounds (its workers scaling up to its reader's "
          "rate), bz2 decompression inside extract, the tokenizer files already built, disk fast enough to stay "
          f"out of the way; a job's fixed start ({fixed:.1f} CPU-s, the tokenizer job's) is taken off each job "
          "before scaling.")


if __name__ == "__main__":
    main()
