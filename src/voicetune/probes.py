"""The fixed probe panel: the same held-out drafts for every run of an experiment."""

from __future__ import annotations

import random

from voicetune.records import reference


def one_style_per_passage(records: list[dict], seed: int) -> list[dict]:
    """One record per original passage (seeded pick of its rough style), in seeded order."""
    by_passage: dict[str, list[dict]] = {}
    for rec in sorted(records, key=lambda r: r["id"]):
        by_passage.setdefault(reference(rec), []).append(rec)
    rng = random.Random(seed)
    pool = [rng.choice(group) for group in by_passage.values()]
    rng.shuffle(pool)
    return pool


def probe_panel(records: list[dict], panel: dict, size: int, seed: int) -> list[dict]:
    """Seeded picks per shape (`eval.panel`), filled up to `eval.panel_size` from other shapes."""
    pool = one_style_per_passage(records, seed)
    chosen = []
    for shape, n in panel.items():
        chosen += [r for r in pool if r["shape"] == str(shape)][:n]
    rest = [r for r in pool if r not in chosen]
    chosen += rest[: max(0, size - len(chosen))]
    return [{"probe_id": f"p{i}-{r['shape']}", **r} for i, r in enumerate(chosen)]
