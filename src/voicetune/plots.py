"""Comparison plots for `voicetune compare`, each returned as an embeddable PNG data URI."""

from __future__ import annotations

import base64
import io
import textwrap

from voicetune.config import SHAPES
from voicetune.voice import SOURCES

# tab10: run i keeps the same colour in every plot and in the report's tables.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
BASE_COLOR = "#b0b0b0"
RATES = (("early_stop_rate", "early stop"), ("runaway_rate", "runaway (no end token)"),
         ("shape_match_rate", "shape match"))


def color(i: int) -> str:
    """The colour of the i-th run."""
    return COLORS[i % len(COLORS)]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # Figure without pyplot: no global backend state, renders with Agg.
    return Figure(figsize=(width, height), dpi=100)


def _data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ticks(labels: list[str]) -> list[str]:
    # Labels like "data=shape_mix, train.epochs=2" are wrapped so neighbours don't overlap.
    return ["\n".join(textwrap.wrap(label, 16)) for label in labels]


def loss_curves(histories: dict[str, dict | None]) -> str:
    """Eval loss per run (solid) over its train loss (faint), against step; None = no history."""
    fig = _figure(8, 3.8)
    ax = fig.add_subplot()
    for i, (label, history) in enumerate(histories.items()):
        if history is None:
            continue
        train = [(r["step"], r["loss"]) for r in history.get("train", [])
                 if r.get("loss") is not None]
        evals = [(r["step"], r["eval_loss"]) for r in history.get("eval", [])
                 if r.get("eval_loss") is not None]
        if train:
            ax.plot(*zip(*train), color=color(i), alpha=0.25, linewidth=1)
        if evals:
            ax.plot(*zip(*evals), color=color(i), marker="o", linewidth=2, label=f"{label} (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("eval loss (train loss faint)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _data_uri(fig)


def shapes_of(evals: dict[str, dict | None]) -> list[str]:
    """Shapes present in any run's eval samples: pipeline order first, then unknown ones."""
    seen = {s["shape"] for e in evals.values() if e for s in e.get("samples", [])}
    return [s for s in SHAPES if s in seen] + sorted(seen - set(SHAPES))


def _ratios(evaluation: dict | None, shape: str, model: str) -> list[float]:
    if evaluation is None:
        return []
    outputs = [s["outputs"].get(model) for s in evaluation.get("samples", [])
               if s["shape"] == shape]
    return [o["length_ratio"] for o in outputs if o and o.get("length_ratio") is not None]


def length_ratios(evals: dict[str, dict | None]) -> str:
    """Box + strip plot of output/reference length per shape: each run's tuned model, base grey."""
    shapes = shapes_of(evals)
    fig = _figure(max(4.0, 3.2 * len(shapes)), 3.8)
    axes = fig.subplots(1, len(shapes), squeeze=False)[0]
    for ax, shape in zip(axes, shapes):
        for i, evaluation in enumerate(evals.values()):
            for model, offset, fill in (("tuned", -0.18, color(i)), ("base", 0.18, BASE_COLOR)):
                values = _ratios(evaluation, shape, model)
                if not values:
                    continue
                box = ax.boxplot(values, positions=[i + offset], widths=0.3, patch_artist=True,
                                 showfliers=False, medianprops={"color": "black"})
                box["boxes"][0].set(facecolor=fill, alpha=0.6)
                ax.scatter([i + offset] * len(values), values, s=8, color="black", zorder=3)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(evals)), _ticks(list(evals)), fontsize=7)
        ax.set_title(shape)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("output / reference words")
    fig.suptitle("length ratio per shape (left: tuned, right grey: base; 1.0 = reference length)",
                 fontsize=9)
    fig.tight_layout()
    return _data_uri(fig)


def rates(evals: dict[str, dict | None]) -> str:
    """Early-stop, runaway and shape-match rates per run: tuned (colour) next to base (grey)."""
    fig = _figure(10, 3.6)
    axes = fig.subplots(1, len(RATES))
    for ax, (key, title) in zip(axes, RATES):
        for i, evaluation in enumerate(evals.values()):
            for model, offset, fill in (("tuned", -0.2, color(i)), ("base", 0.2, BASE_COLOR)):
                stats = evaluation and evaluation["models"].get(model)
                if stats and stats["overall"].get(key) is not None:
                    ax.bar(i + offset, stats["overall"][key], width=0.4, color=fill)
        ax.set_xticks(range(len(evals)), _ticks(list(evals)), fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("fraction of samples")
    fig.suptitle("overall rates (left bar: tuned, right grey bar: base)", fontsize=9)
    fig.tight_layout()
    return _data_uri(fig)



def _likeness_at(evaluation: dict, source: str, shape: str) -> dict | None:
    """The {"value", "ci", "n"} mean likeness of one text source on one shape ("all": overall)."""
    likeness = evaluation["voice"]["texts"].get(source, {}).get("likeness") or {}
    return likeness.get("overall") if shape == "all" else likeness.get("per_shape", {}).get(shape)


def likeness(evals: dict[str, dict | None]) -> str:
    """Mean P(author) per shape, rough -> base -> tuned -> reference, one line per run (None: none), 95% CI bars."""
    shapes = [*shapes_of(evals), "all"]
    fig = _figure(max(5.0, 2.6 * len(shapes)), 3.6)
    axes = fig.subplots(1, len(shapes), squeeze=False, sharey=True)[0]
    for ax, shape in zip(axes, shapes):
        for i, (label, evaluation) in enumerate(evals.items()):
            if evaluation is None:
                continue
            points = [(x, _likeness_at(evaluation, s, shape)) for x, s in enumerate(SOURCES)]
            points = [(x + 0.06 * i, p) for x, p in points if p and p["value"] is not None]
            if not points:
                continue
            xs, values = [x for x, _ in points], [p["value"] for _, p in points]
            errors = [[v - p["ci"][0] for v, (_, p) in zip(values, points)],
                      [p["ci"][1] - v for v, (_, p) in zip(values, points)]]
            ax.errorbar(xs, values, yerr=errors, color=color(i), marker="o", capsize=3, label=label)
        ax.set_xticks(range(len(SOURCES)), SOURCES, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(shape)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("P(author)")
    if sum(e is not None for e in evals.values()) > 1:
        axes[-1].legend(fontsize=7)
    fig.suptitle("author-likeness per shape: the draft, both rewrites, the author's own passage "
                 "(mean, 95% bootstrap interval)", fontsize=9)
    fig.tight_layout()
    return _data_uri(fig)
