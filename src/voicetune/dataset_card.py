"""The dataset card: counts, token lengths, dedup and rejections, as card.json + card.md + a PNG."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

SPLITS = ("train", "valid")
FACETS = ("shape", "section", "style", "kind")
HIST_BINS = 30


def write(out: Path, splits: dict[str, list[dict]], removed: list[dict], rejected: list[dict],
          stats: dict, styles: list[str]) -> dict:
    """Write card.json, card.md and token_hist.png into `out`; return the card dict."""
    info = {
        "counts": counts(splits, styles),
        "papers": {s: sorted({r["paper"] for r in splits[s]}) for s in SPLITS},
        "tokens": token_stats(splits),
        "rejected": {"total": len(rejected),
                     "by_reason": dict(Counter(r.get("reason", "?") for r in rejected))},
        "dedup": {"removed": len(removed),
                  "by_reason": dict(Counter(r["reason"] for r in removed)), "items": removed},
        "generation": {k: stats.get(k) for k in ("cost_usd", "prompt_tokens", "completion_tokens")},
    }
    info["tokens"]["histogram"] = token_hist(splits, out / "token_hist.png")
    (out / "card.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    (out / "card.md").write_text(markdown(info), encoding="utf-8")
    return info


def counts(splits: dict[str, list[dict]], styles: list[str]) -> dict:
    """Records per split and per shape / section / style, overall and by split."""
    result: dict = {"split": {s: len(splits[s]) for s in SPLITS}}
    for facet in FACETS:
        by_split = {s: Counter(r[facet] for r in splits[s]) for s in SPLITS}
        # Configured styles with no surviving pair still show up, as 0.
        names = sorted(set().union(*by_split.values()) | (set(styles) if facet == "style" else set()))
        result[facet] = {n: sum(by_split[s][n] for s in SPLITS) for n in names}
        result[f"{facet}_by_split"] = {n: {s: by_split[s][n] for s in SPLITS} for n in names}
    return result


def token_stats(splits: dict[str, list[dict]]) -> dict:
    """min / median / max record length in chat-template tokens."""
    lengths = [r["tokens"] for s in SPLITS for r in splits[s]]
    return {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)}


def token_hist(splits: dict[str, list[dict]], path: Path) -> dict:
    """Save a stacked train/valid token-length histogram; return its bin edges and counts."""
    from matplotlib.figure import Figure

    # Figure without pyplot: no global backend state, renders with Agg.
    fig = Figure(figsize=(7, 3.5), dpi=100)
    ax = fig.add_subplot()
    data = [[r["tokens"] for r in splits[s]] for s in SPLITS]
    heights, edges, _ = ax.hist(data, bins=HIST_BINS, stacked=True, label=list(SPLITS))
    ax.set_xlabel("tokens per record (chat template)")
    ax.set_ylabel("records")
    ax.set_title("token length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    # Stacked heights are cumulative; store each split's own counts.
    own = [list(heights[0])] + [list(heights[i] - heights[i - 1]) for i in range(1, len(SPLITS))]
    return {"edges": [float(e) for e in edges],
            **{s: [int(round(c)) for c in own[i]] for i, s in enumerate(SPLITS)}}


def markdown(info: dict) -> str:
    """The card as Markdown."""
    c, t, gen = info["counts"], info["tokens"], info["generation"]
    lines = [
        "# Dataset card", "",
        f"- records: {c['split']['train']} train / {c['split']['valid']} valid",
        f"- papers: {len(info['papers']['train'])} train / {len(info['papers']['valid'])} valid",
        f"- valid papers: {', '.join(info['papers']['valid'])}",
        f"- tokens per record: min {t['min']}, median {t['median']}, max {t['max']}",
        f"- dedup removed: {info['dedup']['removed']}{_inline(info['dedup']['by_reason'])}",
        f"- rejected by quality gates: {info['rejected']['total']}",
        f"- generation: cost ${gen['cost_usd'] or 0:.4f}, prompt tokens {gen['prompt_tokens']}, "
        f"completion tokens {gen['completion_tokens']}",
        "", "![token length histogram](token_hist.png)", "",
    ]
    for facet in FACETS:
        lines += _table(facet, c[f"{facet}_by_split"])
    lines += ["## Rejected by reason", "", "| reason | pairs |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(info["rejected"]["by_reason"].items())]
    return "\n".join(lines) + "\n"


def _table(facet: str, by_split: dict[str, dict[str, int]]) -> list[str]:
    rows = [f"## Records per {facet}", "", f"| {facet} | train | valid | total |",
            "|---|---:|---:|---:|"]
    for name, per in by_split.items():
        rows.append(f"| {name} | {per['train']} | {per['valid']} | {per['train'] + per['valid']} |")
    return rows + [""]


def _inline(counter: dict[str, int]) -> str:
    return " (" + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) + ")" if counter else ""
