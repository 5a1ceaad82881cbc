"""The shape ablation's tables for RESULTS.md, from the members' run folders (like for like).

    python experiments/ablation_table.py multirun/shape_ablation/<time>  > table.md

Every member rewrote the same held-out drafts (the `heldout` stage's key does not read
`data.shapes`; checked here), so member vs member is paired per draft, as tuned vs base is in one
run. Author-likeness: each member's eval stage trains its classifier on its own training split,
which differs between members (sentence-only data holds only sentences), so the script refits one
classifier on the union of the members' training records, checks it on the held-out drafts and
scores every member's outputs with it: one instrument for all. 95% percentile bootstrap
intervals over the drafts (`eval.n_boot` resamples, `eval.seed`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from voicetune import metrics, voice
from voicetune.compare import find_runs
from voicetune.intervals import Boot, mean, median, paired_mean, paired_median, paired_pooled, pooled
from voicetune.records import read_jsonl, reference

SHAPES = ("sentence", "paragraph", "section", "abstract")


def load(run: Path) -> dict:
    cfg = OmegaConf.load(run / "config.yaml")
    report = json.loads((run / "eval/eval.json").read_text())
    manifest = json.loads((run / "run.json").read_text())
    train = next(s for s in manifest["stages"] if s["name"] == "train")["metrics"]
    return {"name": cfg.data.name, "cfg": cfg, "report": report, "train_metrics": train,
            "train": read_jsonl(run / "dataset/train.jsonl"), "heldout": read_jsonl(run / "heldout/heldout.jsonl")}


def rows_of(member: dict, judge: voice.Judge, model: str = "tuned") -> dict[str, dict]:
    """Per draft id: shape, the model's output's length ratio, flags, likeness and style counts."""
    out = {}
    samples = member["report"]["samples"]
    likeness = judge.scores([s["outputs"][model]["text"] for s in samples])
    for sample, like in zip(samples, likeness):
        tuned = sample["outputs"][model]
        counts = metrics.style_counts(tuned["text"])
        out[sample["id"]] = {"shape": sample["shape"], "length_ratio": tuned["length_ratio"],
                             "early_stop": float(tuned["early_stop"]), "runaway": float(tuned["runaway"]),
                             "likeness": like, **counts}
    return out


# Under 5 drafts a bootstrap interval is a handful of values, not a range: the number alone.
MIN_N = 5


def cell(est: dict | None, digits: int = 2) -> str:
    if not est or est.get("value") is None:
        return "-"
    ci = est.get("ci") if est.get("n", 0) >= MIN_N else None
    return f"{est['value']:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def measures(rows: list[dict], boot: Boot) -> dict:
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    return {"length ratio (median)": median(col("length_ratio"), boot),
            "early stop": mean(col("early_stop"), boot), "runaway": mean(col("runaway"), boot),
            "author-likeness": mean(col("likeness"), boot) if None not in col("likeness") else None,
            "clichés / 1k": pooled(col("cliches"), col("words"), boot, 1000),
            "hedges / 1k": pooled(col("hedges"), col("words"), boot, 1000)}


def differences(a: list[dict], b: list[dict], boot: Boot) -> dict:
    col = lambda rows, k: [r[k] for r in rows]  # noqa: E731
    return {"length ratio (median)": paired_median(col(a, "length_ratio"), col(b, "length_ratio"), boot),
            "early stop": paired_mean(col(a, "early_stop"), col(b, "early_stop"), boot),
            "runaway": paired_mean(col(a, "runaway"), col(b, "runaway"), boot),
            "author-likeness": (paired_mean(col(a, "likeness"), col(b, "likeness"), boot)
                                if None not in col(a, "likeness") + col(b, "likeness") else None),
            "clichés / 1k": paired_pooled(col(a, "cliches"), col(a, "words"), col(b, "cliches"), col(b, "words"),
                                          boot, 1000),
            "hedges / 1k": paired_pooled(col(a, "hedges"), col(a, "words"), col(b, "hedges"), col(b, "words"),
                                         boot, 1000)}


def separated(est: dict | None) -> str:
    ci = (est or {}).get("ci")
    if not ci or est.get("n", 0) < MIN_N:
        return f"n < {MIN_N}" if est else "-"
    return "yes" if ci[0] > 0 or ci[1] < 0 else "no"


def main(paths: list[str]) -> str:
    members = [load(run) for run in find_runs([Path(p) for p in paths])]
    if len(members) != 2:
        sys.exit(f"ablation_table: {len(members)} finished runs under {paths}; give the two members")
    ids = [sorted(s["id"] for s in m["report"]["samples"]) for m in members]
    if ids[0] != ids[1]:
        sys.exit("ablation_table: the members rewrote different held-out drafts; not like for like")
    ev = members[0]["cfg"].eval
    boot = Boot(ev.n_boot, ev.seed)
    both = members[0]["train"] + members[1]["train"]
    judge = voice.judge(both, members[0]["heldout"], ev.likeness_min_auc, ev.seed)
    per = [rows_of(m, judge) for m in members] + [rows_of(members[0], judge, "base")]  # one base for both
    names = [m["name"] for m in members] + ["base (no adapter)"]
    card = judge.card()
    author = metrics.style_signals(sorted({reference(r) for r in both}))  # each training passage once
    lines = [f"Members: {', '.join(m['name'] for m in members)}. Training tokens (run.json): "
             + ", ".join(f"{m['name']} {m['train_metrics'].get('real_tokens', 0):,} in "
                         f"{m['train_metrics'].get('steps', '?')} steps" for m in members) + ".",
             f"One likeness classifier for both (training records of both members): "
             f"{card['trained_on']['author']} author passages vs {card['trained_on']['drafts']} drafts; "
             f"held-out ROC AUC {card['auc']} ({'usable' if card['usable'] else card['reason']}).",
             f"The author's own text (the training papers' passages): clichés {author['cliches_per_1k']:.2f} / 1k words, "
             f"hedges {author['hedging_per_1k']:.2f} / 1k.", ""]
    head = ["shape", "n", "measure", *names, f"{names[0]} - {names[1]} (paired)", "interval excludes 0"]
    if [s["outputs"]["base"]["text"] for s in members[0]["report"]["samples"]] != [
            s["outputs"]["base"]["text"] for s in members[1]["report"]["samples"]]:
        lines.append("(the members' base outputs differ: batches differ; the base column is the first member's)")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for shape in (*SHAPES, "all"):
        keys = [k for k in ids[0] if shape == "all" or per[0][k]["shape"] == shape]
        if not keys:
            continue
        rows = [[p[k] for k in keys] for p in per]
        stats = [measures(r, boot) for r in rows]
        diff = differences(rows[0], rows[1], boot)  # rows[2]: base, for reference
        for measure in stats[0]:
            lines.append(f"| {shape} | {len(keys)} | {measure} | " + " | ".join(cell(s[measure]) for s in stats)
                         + f" | {cell(diff[measure])} | {separated(diff[measure])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(main(sys.argv[1:] or ["multirun/shape_ablation"]))
