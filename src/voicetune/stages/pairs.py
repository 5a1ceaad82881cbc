"""Stage `pairs`: every unit x rough style -> (rough draft, polished original), gated.

Remote replies are journaled before anything else uses them (see voicetune.drafting), so a run
killed and rerun does not pay again for what was journaled. Revision units (the author's own
tracked changes, voicetune.revisions) bring their rough draft with them: no request is sent.
"""

from __future__ import annotations

import json

from voicetune.drafting import load_units, make_pairs
from voicetune.records import read_jsonl, write_jsonl
from voicetune.revisions import KIND, revision_pairs


def run(ctx) -> dict:
    """pairs.jsonl, rejected.jsonl and stats.json from the units."""
    units = load_units(ctx.inputs["units"])
    revised = [u for u in units if u.get("kind") == KIND]
    drafted = [u for u in units if u.get("kind") != KIND]
    if drafted or not revised:
        stats = make_pairs(ctx.cfg, drafted, ctx.cache, ctx.out)
    else:  # revisions only: nothing to send
        stats = {"pairs": 0, "rejected": 0, "rejected_by_reason": {}}
    if not revised:
        return stats
    pairs, rejected = revision_pairs(revised, ctx.cfg.data)
    write_jsonl(ctx.out / "pairs.jsonl", read_jsonl(ctx.out / "pairs.jsonl", missing_ok=True) + pairs)
    write_jsonl(ctx.out / "rejected.jsonl", read_jsonl(ctx.out / "rejected.jsonl", missing_ok=True) + rejected)
    stats["revisions"] = {"units": len(revised), "pairs": len(pairs), "rejected": len(rejected)}
    stats["pairs"] += len(pairs)
    stats["rejected"] += len(rejected)
    for r in rejected:
        stats["rejected_by_reason"][r["reason"]] = stats["rejected_by_reason"].get(r["reason"], 0) + 1
    (ctx.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(f"pairs: {len(pairs)} revision pairs from the author's tracked changes "
          f"({len(rejected)} of {len(revised)} revision units rejected)")
    return stats
