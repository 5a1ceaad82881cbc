"""Stage `heldout`: rough drafts of every shape from the held-out papers, for evaluation.

The training data may be sentence-only, but the question the project asks is how the tuned
model handles a paragraph, a section or an abstract. This stage builds that test set from the
held-out papers of the split alone, so it is identical for every data option of an experiment
(it does not read `data.shapes`): the shape ablation compares like with like. Only `eval` reads
it, so `eval.samples_per_shape` never changes what is trained.
"""

from __future__ import annotations

from collections import Counter

from voicetune.config import SHAPES
from voicetune.drafting import held_out_drafts
from voicetune.records import write_jsonl


def run(ctx) -> dict:
    """heldout.jsonl: eval.samples_per_shape drafts of each shape from papers never trained on."""
    records = held_out_drafts(ctx, {shape: ctx.cfg.eval.samples_per_shape for shape in SHAPES})
    write_jsonl(ctx.out / "heldout.jsonl", records)
    shapes = Counter(r["shape"] for r in records)
    return {"records": len(records), "papers": sorted({r["paper"] for r in records}),
            "shapes": {s: shapes[s] for s in SHAPES}}
