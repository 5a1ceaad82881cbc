"""Throughput of the extract stage against python-docx, mammoth and a bare lxml walk.

    python bench/extract.py [--papers 200] [--quick] [--rounds 3]

The demo corpus (7 papers) is replicated to --papers files in a temp folder; every
extractor reads every file from disk. Each round times every extractor once (interleaved,
so a noisy neighbour hits all of them alike); the best round per extractor is reported,
and, for the ratios, also the median over rounds of the ratio within each round (steadier
when the load changes between rounds). Rates are papers per CPU second of this process
(`process_time`): on a shared 2-core machine wall time also counts other jobs' time slices.
Claim (DESIGN: extract must be fast enough to rerun on every config change): voicetune's
extractor >= 3x python-docx and >= 0.5x the bare lxml ceiling while doing the full job.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from lxml import etree

W_T = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t"


def make_corpus(folder: Path, papers: int) -> list[Path]:
    """Copy the demo papers round-robin until there are `papers` files."""
    from voicetune.config import demo_corpus_path

    demo = sorted(Path(demo_corpus_path()).glob("*.docx"))
    files = []
    for i in range(papers):
        dst = folder / f"{i:04d}_{demo[i % len(demo)].name}"
        shutil.copyfile(demo[i % len(demo)], dst)
        files.append(dst)
    return files


def voicetune_extract(files: list[Path]) -> int:
    """The full job: accepted changes, sections, front matter, captions, references."""
    from omegaconf import OmegaConf

    from voicetune.config import CorpusConfig
    from voicetune.stages.extract import Rules, extract_paper

    rules = Rules.from_config(OmegaConf.structured(CorpusConfig(path=str(files[0].parent))))
    return sum(extract_paper(f, rules).words for f in files)


def python_docx(files: list[Path]) -> int:
    import docx

    return sum(len("\n".join(p.text for p in docx.Document(f).paragraphs).split())
               for f in files)


def mammoth_raw(files: list[Path]) -> int:
    import mammoth

    total = 0
    for f in files:
        with open(f, "rb") as fh:
            total += len(mammoth.extract_raw_text(fh).value.split())
    return total


def bare_lxml(files: list[Path]) -> int:
    """The ceiling: unzip, parse, join every w:t; no structure, no cleaning."""
    total = 0
    for f in files:
        with zipfile.ZipFile(f) as zf:
            root = etree.fromstring(zf.read("word/document.xml"))
        total += len("".join(t.text or "" for t in root.iter(W_T)).split())
    return total


EXTRACTORS = {"voicetune": voicetune_extract, "python-docx": python_docx,
              "mammoth": mammoth_raw, "bare lxml": bare_lxml}


def measure(files: list[Path], rounds: int, skip_slow: bool) -> dict[str, list[float]]:
    """Papers/s per extractor in each of `rounds` interleaved rounds."""
    rates: dict[str, list[float]] = {name: [] for name in EXTRACTORS}
    for name, fn in EXTRACTORS.items():  # warm-up: imports, caches, page cache
        fn(files[:7])
    for _ in range(rounds):
        for name, fn in EXTRACTORS.items():
            if skip_slow and name == "mammoth" and rates[name]:
                continue  # ~30 papers/s: one round is enough to place it
            start = time.process_time()
            fn(files)
            rates[name].append(len(files) / (time.process_time() - start))
    return rates


def report(rates: dict[str, list[float]], papers: int) -> str:
    """The results table (markdown) with the two ratios the claim is about."""
    best = {name: max(r) for name, r in rates.items()}
    lines = [f"papers: {papers}", "", "| extractor | papers/s |", "|---|---:|"]
    lines += [f"| {name} | {rate:,.0f} |" for name, rate in best.items()]
    for other, goal in (("python-docx", 3), ("bare lxml", 0.5)):
        within = statistics.median(a / b for a, b in zip(rates["voicetune"], rates[other]))
        lines.append(f"voicetune / {other} = {best['voicetune'] / best[other]:.2f}x best rounds, "
                     f"{within:.2f}x median within a round (goal >= {goal})")
    lines.insert(-2, "")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, build the corpus, time the extractors, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 papers, one round")
    args = parser.parse_args(argv)
    papers, rounds = (20, 1) if args.quick else (args.papers, args.rounds)
    with tempfile.TemporaryDirectory() as tmp:
        files = make_corpus(Path(tmp), papers)
        print(report(measure(files, rounds, skip_slow=True), papers))


if __name__ == "__main__":
    main()
