"""Stage `pairs`: every unit x rough style -> (rough draft, polished original), gated.

Remote replies are journaled before anything else uses them (see voicetune.drafting), so a run
killed and rerun does not pay again for what was journaled.
"""

from __future__ import annotations

from voicetune.drafting import load_units, make_pairs


def run(ctx) -> dict:
    """pairs.jsonl, rejected.jsonl and stats.json from the units."""
    return make_pairs(ctx.cfg, load_units(ctx.inputs["units"]), ctx.cache, ctx.out)
