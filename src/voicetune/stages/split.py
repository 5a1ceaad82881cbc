"""Stage `split`: which papers are held out, decided once from the extracted papers.

`dataset`, `probes`, `heldout`, training's probes and `eval` all read this one file, so a paper
that later loses every pair (dedup, gates) changes nothing about which papers are held out.
The split depends only on the paper ids: `data=sentence` and `data=shape_mix` hold out the same
papers, and their evaluations compare like with like.
"""

from __future__ import annotations

import hashlib

from voicetune.errors import UserError
from voicetune.records import read_jsonl, write_split


def valid_papers(papers: list[str], valid_fraction: float, seed: int) -> set[str]:
    """The papers with the smallest seeded hash."""
    # At least one paper on each side: 7 papers x 0.1 -> 1 valid, 6 train.
    n_valid = min(max(1, round(valid_fraction * len(papers))), len(papers) - 1)
    ranked = sorted(papers, key=lambda pid: hashlib.sha256(f"{seed}:{pid}".encode()).hexdigest())
    return set(ranked[:n_valid])


def run(ctx) -> dict:
    """split.json: {"train": [paper ids], "valid": [paper ids]}."""
    papers = sorted(p["id"] for p in read_jsonl(ctx.inputs["extract"] / "papers.jsonl"))
    if len(papers) < 2:
        raise UserError(f"split: {len(papers)} paper(s) extracted; a paper-level train/valid split "
                        "needs at least 2 papers")
    valid = valid_papers(papers, ctx.cfg.data.valid_fraction, ctx.cfg.data.seed)
    split = {"train": [p for p in papers if p not in valid], "valid": sorted(valid)}
    write_split(ctx.out, split)
    return {"train": len(split["train"]), "valid": len(split["valid"]), "valid_papers": split["valid"]}

