"""Stage `units`: extracted papers -> units of the configured shapes (`data.shapes`).

The seed's lesson: a model trained only on sentences writes one sentence and stops, so the
shape mix decides how long the tuned model writes.
"""

from __future__ import annotations

from collections import Counter

from voicetune.chat import chat_token_counter, text_token_counter
from voicetune.errors import UserError
from voicetune.records import read_jsonl, write_jsonl
from voicetune.revisions import build_revision_units
from voicetune.shapes import build_units, targets


def run(ctx) -> dict:
    """papers.jsonl -> units.jsonl + dropped.jsonl."""
    cfg, tok = ctx.cfg, ctx.tokenizer()
    papers = read_jsonl(ctx.inputs["extract"] / "papers.jsonl")
    wants = targets(cfg.data.shapes, cfg.data.max_units)
    counters = chat_token_counter(tok), text_token_counter(tok)
    units, dropped, report = (build_units(cfg, papers, *counters, wants)
                              if "depolish" in cfg.data.sources else ([], [], {}))
    if "revisions" in cfg.data.sources:
        revised, revised_dropped = build_revision_units(cfg, papers, *counters)
        units, dropped = units + revised, dropped + revised_dropped
        for shape, n in Counter(u["shape"] for u in revised).items():
            report[f"{shape} (revisions)"] = {"wanted": "all", "available": n, "chosen": n}
    if not units:
        raise UserError(f"data={cfg.data.name}: no unit of shapes {list(cfg.data.shapes)} from sources "
                        f"{list(cfg.data.sources)} fits the limits (data.limits, token budget "
                        f"{cfg.data.max_tokens or cfg.train.seq_len}); revisions need Word files with tracked changes")
    write_jsonl(ctx.out / "units.jsonl", units)
    write_jsonl(ctx.out / "dropped.jsonl", dropped)
    _print_report(report, Counter(d["reason"].split(":")[0] for d in dropped))
    return {"units": len(units), "dropped": len(dropped), "shapes": report,
            "revision_units": sum(u.get("kind") == "revision" for u in units)}


def _print_report(report: dict, drops: Counter) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="units per shape")
    for col in ("shape", "wanted", "available", "chosen"):
        table.add_column(col)
    for shape, row in report.items():
        table.add_row(shape, *(str(row[k]) for k in ("wanted", "available", "chosen")))
    Console().print(table)
    if drops:
        Console().print("dropped: " + ", ".join(f"{n} {reason}" for reason, n in drops.most_common()))
