"""Stage `probes`: the fixed probe panel, drafted from the held-out papers.

Training generates for these drafts at every eval: the same panel for every run of an
experiment (export's parity check rewrites the short `heldout` drafts instead). It reads
`eval.panel` and `eval.panel_size` only, so the size of the evaluation never changes what is trained.
"""

from __future__ import annotations

from voicetune.config import SHAPES
from voicetune.drafting import held_out_drafts
from voicetune.probes import probe_panel
from voicetune.records import write_jsonl


def run(ctx) -> dict:
    """probes.jsonl: eval.panel drafts per shape, filled up to eval.panel_size from other shapes."""
    ev = ctx.cfg.eval
    # Up to panel_size passages of every shape, so a shape the held-out papers lack can be filled.
    records = held_out_drafts(ctx, {shape: ev.panel_size for shape in SHAPES})
    panel = probe_panel(records, dict(ev.panel), ev.panel_size, ctx.cfg.data.seed)
    write_jsonl(ctx.out / "probes.jsonl", panel)
    return {"probes": len(panel), "shapes": [p["shape"] for p in panel]}
