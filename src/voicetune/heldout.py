"""Stage `heldout`: rough drafts of every shape from the valid papers, for probes and eval.

The training data may be sentence-only, but the question the project asks is how the tuned
model handles a paragraph, a section or an abstract. This stage builds that test set from the
held-out papers alone, so it is identical for every data option of an experiment (its cache
key does not depend on `data.shapes`): the shape ablation compares like with like.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from voicetune.cache import Cache
from voicetune.generate import PANEL
from voicetune.units import Budget, candidates, load_papers, select, within_limits

SHAPES = ("paragraph", "section", "abstract", "sentence")


def heldout_units(cfg, papers: list[dict], valid: set[str], budget: Budget) -> list[dict]:
    """train.eval_samples passages of each shape (at least what the probe panel needs)."""
    chosen, dropped = [], []
    for shape in SHAPES:
        pool = [u for p in papers if p["id"] in valid for u in candidates(p, shape)]
        want = max(cfg.train.eval_samples, PANEL.get(shape, 0))
        chosen += select(within_limits(pool, shape, cfg, budget, dropped), want, cfg.data.seed)
    return chosen


def rough_drafts(cfg, units: list[dict], out: Path) -> list[dict]:
    """Pairs for the units, one rough style each (round-robin), via the pairs stage's machinery."""
    from voicetune import pairs

    made = []
    for i, style in enumerate(cfg.data.rough_styles):
        mine = units[i:: len(cfg.data.rough_styles)]
        if not mine:
            continue
        folder = out / f"pairs-{style.name}"
        folder.mkdir()
        with open(folder / "units.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(u, ensure_ascii=False) + "\n" for u in mine)
        one_style = OmegaConf.merge(cfg, {"data": {"rough_styles": [OmegaConf.to_container(style)]}})
        pairs.run(one_style, {"units": folder}, folder)
        made += [json.loads(line) for line in open(folder / "pairs.jsonl", encoding="utf-8")]
    return made


def run(cfg, inputs: dict[str, Path], out: Path) -> dict:
    """Write heldout.jsonl: ChatML records of every shape from papers never trained on."""
    from voicetune.dataset import to_record, valid_papers
    from voicetune.modelio import chat_token_counter, load_tokenizer

    papers = load_papers(inputs["extract"])
    valid = valid_papers(sorted(p["id"] for p in papers), cfg.data.valid_fraction, cfg.data.seed)
    tok = load_tokenizer(cfg.model, Cache(cfg.cache_dir))
    count = chat_token_counter(tok)
    budget = Budget(cfg, count, lambda text: len(tok(text, add_special_tokens=False)["input_ids"]))
    drafts = rough_drafts(cfg, heldout_units(cfg, papers, valid, budget), out)
    records = [to_record(p, cfg, count) for p in sorted(drafts, key=lambda p: (p["shape"], p["id"]))]
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    shapes = {s: sum(r["shape"] == s for r in records) for s in SHAPES}
    return {"records": len(records), "papers": sorted(valid), "shapes": shapes}
