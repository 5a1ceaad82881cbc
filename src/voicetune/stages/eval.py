"""Stage `eval`: the tuned adapter and its base model on the same held-out rough drafts.

Per model: eval loss (own valid split and the shared held-out set), length ratio per shape,
early-stop and runaway rates, shape match, style signals against the author's own text, chrF.
`voice` (voicetune.voice) adds author-likeness of the draft, both rewrites and the reference,
meaning kept, memorization, and tuned minus base on the same drafts.

Every rate, mean and median has a bootstrap 95% interval (voicetune.intervals): the blocks
`summarize` and `style_signals` make get a `ci` map beside their numbers ({key: [lo, hi]}), the
`voice` block's measures are {"value", "ci", "n"}.
"""

from __future__ import annotations

import contextlib
import json

from voicetune import intervals, metrics, voice
from voicetune.chat import caps, encode_records, end_tokens
from voicetune.greedy import generate
from voicetune.intervals import Boot
from voicetune.packing import PackedCollator, packed_rows
from voicetune.probes import one_style_per_passage
from voicetune.records import draft, read_jsonl, reference, user_turn

SAMPLE_COLUMNS = ["id", "shape", "model", "output", "reference", "output_words", "reference_words",
                  "length_ratio", "ended", "likeness", "moved_toward_reference", "markers", "markers_kept",
                  "longest_copied_span"]
# Per-draft voice fields copied into eval.json's samples (the rest stay internal: counts, chrF stats).
VOICE_FIELDS = ("likeness", "moved_toward_reference", "markers", "markers_kept", "ngrams", "copied_ngrams",
                "longest_copied_span")
# summarize()'s rates: each a share of drafts with the flag.
FLAGS = ("early_stop", "runaway", "shape_match")


def mean_loss(model, examples: list[dict], seq_len: int, pad_id: int, batch_size: int) -> float | None:
    """Token-weighted mean loss over packed rows (no gradient)."""
    import torch

    if not examples:
        return None
    rows = packed_rows(examples, list(range(len(examples))), seq_len, len(examples), seed=0)
    collate = PackedCollator(examples, pad_id, seq_len)
    total, tokens = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start: start + batch_size])
            batch.pop("real_tokens")
            n = int((batch["labels"][:, 1:] != -100).sum())  # counted here: no device sync
            batch = {k: v.to(model.device) for k, v in batch.items()}  # inputs follow the model
            total += float(model(**batch, use_cache=False).loss) * n
            tokens += n
    return round(total / max(tokens, 1), 4)


def model_report(outputs: list[dict], records: list[dict], author: dict, losses: dict,
                 boot: Boot) -> tuple[dict, list[dict]]:
    """Length, stop, shape and style metrics of one model's outputs with intervals, and per-sample metrics."""
    texts, refs = [o["text"] for o in outputs], [reference(r) for r in records]
    samples = [{"shape": r["shape"], **metrics.sample_metrics(o["text"], reference(r), r["shape"], o["ended"])}
               for o, r in zip(outputs, records)]
    summary = metrics.summarize(samples)
    for shape, stats in summary["per_shape"].items():
        stats["ci"] = _stats_ci([s for s in samples if s["shape"] == shape], boot)
    summary["overall"]["ci"] = _stats_ci(samples, boot)
    counts = [metrics.style_counts(t) for t in texts]
    style = {**metrics.style_rates(metrics.total(counts)), "ci": _style_ci(counts, boot)}
    chrf_stats = metrics.chrf_stats(texts, refs)

    def distance(idx: list[int]) -> float:
        return metrics.style_distance(metrics.style_rates(metrics.total([counts[i] for i in idx])), author)

    report = {**losses, **summary, "style": style, "style_distance": round(distance(list(range(len(counts)))), 4),
              "chrf": round(metrics.chrf_from_stats(chrf_stats), 2),
              "ci": {"style_distance": intervals.of_stat(distance, len(counts), boot)["ci"],
                     "chrf": intervals.of_stat(lambda idx: metrics.chrf_from_stats([chrf_stats[i] for i in idx]),
                                               len(counts), boot)["ci"]}}
    for sample, stats in zip(samples, chrf_stats):
        sample["chrf_stats"] = stats
    return report, samples


def _stats_ci(samples: list[dict], boot: Boot) -> dict:
    """Intervals of one summarize() block: the length-ratio median and each flag's rate."""
    return {"length_ratio_median": intervals.median([s["length_ratio"] for s in samples], boot)["ci"],
            **{f"{flag}_rate": intervals.mean([s[flag] for s in samples], boot)["ci"] for flag in FLAGS}}


def _style_ci(counts: list[dict], boot: Boot) -> dict:
    """Intervals of the pooled style rates: resampled drafts, their counts summed."""
    return {key: intervals.pooled([c[n] for c in counts], [c[d] for c in counts], boot, scale)["ci"]
            for key, (n, d, scale) in metrics.RATE_PARTS.items()}


def run(ctx) -> dict:
    """Generate with tuned and base model for every held-out draft; write eval.json."""
    from peft import PeftModel

    from voicetune.models import load_for_inference

    cfg, inputs, out, tracker = ctx.cfg, ctx.inputs, ctx.out, ctx.tracker
    tok = ctx.tokenizer()
    ends = end_tokens(cfg.model, tok)
    end_ids = [tok.convert_tokens_to_ids(t) for t in ends]
    model = PeftModel.from_pretrained(load_for_inference(cfg.model, ctx.cache), str(inputs["train"] / "adapter"))
    heldout = read_jsonl(inputs["heldout"] / "heldout.jsonl")
    valid_all = read_jsonl(inputs["dataset"] / "valid.jsonl")
    valid = one_style_per_passage(valid_all, cfg.data.seed)[: cfg.eval.loss_records or None]
    train = read_jsonl(inputs["dataset"] / "train.jsonl")
    refs = [reference(r) for r in heldout]
    boot = Boot(cfg.eval.n_boot, cfg.eval.seed)
    authored = sorted({reference(r) for r in train})  # each training passage once, whatever its rough styles
    author = metrics.style_signals(authored)
    # Trained on the training papers only, checked on every held-out passage and its drafts.
    judge = voice.judge(train, valid_all + heldout, cfg.eval.likeness_min_auc, cfg.eval.seed)
    copies = voice.CopyIndex(authored)
    rows = {"rough": voice.draft_rows([draft(r) for r in heldout], heldout, judge, None),
            "reference": voice.draft_rows(refs, heldout, judge, copies)}
    report = {"models": {}, "author": author, "placement": {"device": str(model.device), "dtype": str(model.dtype)},
              "samples": [dict(id=r["id"], shape=r["shape"], section=r["section"], rough=user_turn(r), reference=ref,
                               outputs={}) for r, ref in zip(heldout, refs)]}
    generated, limits = {}, caps(tok, refs, cfg.eval)
    for name in ("base", "tuned"):  # base first, on the weights as loaded
        with _weights(model, name):
            generated[name] = (_losses(cfg, model, tok, ends, valid, heldout),
                               generate(model, tok, [r["messages"] for r in heldout], limits, end_ids,
                                        cfg.eval.batch_size, desc=f"eval {name}: {len(heldout)} drafts"))
    for name in ("tuned", "base"):
        losses, outs = generated[name]
        report["models"][name], samples = model_report(outs, heldout, author, losses, boot)
        rows[name] = voice.draft_rows([o["text"] for o in outs], heldout, judge, copies)
        voice.add_moved(rows[name], rows["rough"], rows["reference"])
        for row, out_, sample, cap in zip(report["samples"], outs, samples, limits):
            # raw, tokens and cap: parity reuses the tuned replies as its adapter row
            row["outputs"][name] = {"text": out_["text"], "ended": out_["ended"], "raw": out_["raw"],
                                    "tokens": out_["tokens"], "cap": cap,
                                    **{k: v for k, v in sample.items() if k != "chrf_stats"}}
        for row, sample in zip(rows[name], samples):
            row.update(length_ratio=sample["length_ratio"], chrf_stats=sample["chrf_stats"])
    report["voice"] = _voice(rows, judge, boot)
    _per_sample_voice(report["samples"], rows)
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    summary = _summary(report)
    if tracker is not None:
        _log(tracker, report, summary)
    _print(report)
    return summary


def _voice(rows: dict[str, list[dict]], judge: voice.Judge, boot: Boot) -> dict:
    """The voice block: the classifier's card, each text source's measures, tuned minus base."""
    return {"classifier": judge.card(), "copy_ngram": voice.COPY_N,
            "texts": {source: voice.source_summary(rows[source], boot) for source in voice.SOURCES},
            "paired": {"tuned_minus_base": voice.paired(rows["tuned"], rows["base"], boot)}}


def _per_sample_voice(samples: list[dict], rows: dict[str, list[dict]]) -> None:
    """Each sample's likeness of draft and reference, and each output's voice fields."""
    for i, sample in enumerate(samples):
        sample["likeness"] = {source: rows[source][i]["likeness"] for source in ("rough", "reference")}
        sample["reference_copied"] = {k: rows["reference"][i][k] for k in ("ngrams", "copied_ngrams",
                                                                        "longest_copied_span")}
        for name, output in sample["outputs"].items():
            output.update({k: rows[name][i][k] for k in VOICE_FIELDS})


def _print(report: dict) -> None:
    """Tuned vs base (and their paired difference), one row per measure, with 95% intervals."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="eval: tuned vs base on the held-out drafts (95% bootstrap intervals)")
    for col in ("measure", *report["models"], "tuned - base"):
        table.add_column(col)
    models, texts = report["models"], report["voice"]["texts"]
    paired = report["voice"]["paired"]["tuned_minus_base"]
    for label, path, diff in MODEL_ROWS:
        table.add_row(label, *(_cell(_with_ci(m, path)) for m in models.values()), _cell(paired.get(diff)))
    for label, path, diff in VOICE_ROWS:
        table.add_row(label, *(_cell(_get(texts[name], path)) for name in models), _cell(paired.get(diff)))
    Console().print(table)
    card = report["voice"]["classifier"]
    likeness = {source: _get(texts[source], ("likeness", "overall")) for source in ("rough", "reference")}
    Console().print(f"author-likeness classifier: held-out AUC {_cell(card['auc'])}; "
                    + (f"rough drafts {_cell(likeness['rough'])}, references {_cell(likeness['reference'])}"
                       if card["usable"] else f"no scores: {card['reason']}"))


# Console rows: label, where in a model's report (its `ci` map beside it), its paired key.
MODEL_ROWS = (("length ratio (median)", ("overall", "length_ratio_median"), "length_ratio_median"),
              ("early stop rate", ("overall", "early_stop_rate"), None),
              ("runaway rate", ("overall", "runaway_rate"), None),
              ("shape match rate", ("overall", "shape_match_rate"), None),
              ("style distance to author", ("style_distance",), None), ("chrF", ("chrf",), "chrf"),
              ("eval loss", ("eval_loss",), None), ("held-out loss", ("heldout_loss",), None))
# ... and where in voice.texts[model].
VOICE_ROWS = (("author-likeness (mean)", ("likeness", "overall"), "likeness_mean"),
              ("moved toward reference (median)", ("moved_toward_reference_median",),
               "moved_toward_reference_median"),
              ("all numbers/citations kept", ("meaning", "all_kept_rate"), "all_kept_rate"),
              (f"copied {voice.COPY_N}-grams", ("memorization", f"copied_{voice.COPY_N}gram_share"), None))


def _get(tree: dict | None, path: tuple):
    for key in path:
        tree = (tree or {}).get(key)
    return tree


def _with_ci(report: dict, path: tuple):
    """The number at path as an estimate when the `ci` map beside it has its interval."""
    parent, key = _get(report, path[:-1]), path[-1]
    ci = parent.get("ci", {}).get(key)
    return {"value": parent[key], "ci": ci} if ci else parent[key]


def _cell(value) -> str:
    """0.912 [0.850, 0.970] for an estimate, 0.912 for a number, - for nothing."""
    if isinstance(value, dict):
        ci = value["ci"]
        return _cell(value["value"]) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    return "-" if value is None else f"{value:.3f}"


@contextlib.contextmanager
def _weights(model, name: str):
    """Context: the base model (adapter off) or the tuned one.

    On float32 weights (CPU) the tuned model runs with the adapter merged in, undone on exit:
    peft's separate LoRA matmuls cost ~7% of a generation here, and the merge gives the same
    tokens (8 rows x 100 greedy tokens, 2026-12-02). On bf16/fp16 (GPU, MPS) the adapter stays
    apart: a merge would round its small update into half-precision weights.
    """
    import torch

    if name == "base":
        with model.disable_adapter():
            yield
        return
    merge = model.dtype == torch.float32
    if merge:
        model.merge_adapter()
    try:
        yield
    finally:
        if merge:
            model.unmerge_adapter()


def _losses(cfg, model, tok, ends, valid: list[dict], heldout: list[dict]) -> dict:
    seq = cfg.train.seq_len
    valid_ex, _, _ = encode_records(valid, tok, ends, seq)
    held_ex, _, _ = encode_records(heldout, tok, ends, seq)
    return {"eval_loss": mean_loss(model, valid_ex, seq, tok.pad_token_id, cfg.train.batch_size),
            "heldout_loss": mean_loss(model, held_ex, seq, tok.pad_token_id, cfg.train.batch_size)}


def _summary(report: dict) -> dict:
    """The flat numbers a sweep compares, each interval as `_lo` / `_hi` beside its value."""
    out = {"voice/classifier_auc": report["voice"]["classifier"]["auc"]}
    for name, m in report["models"].items():
        overall = m["overall"]
        out.update({f"{name}/eval_loss": m["eval_loss"], f"{name}/heldout_loss": m["heldout_loss"]})
        for key in ("length_ratio_median", "early_stop_rate", "runaway_rate", "shape_match_rate"):
            out.update(_keyed(f"{name}/{key}", overall[key], overall["ci"][key]))
        for key in ("style_distance", "chrf"):
            out.update(_keyed(f"{name}/{key}", m[key], m["ci"][key]))
    for key in ("texts", "paired"):
        out.update(_flat(report["voice"][key], "voice"))
    return out


def _keyed(key: str, value, ci: list | None) -> dict:
    return {key: value, f"{key}_lo": ci[0] if ci else None, f"{key}_hi": ci[1] if ci else None}


def _flat(tree: dict, prefix: str) -> dict:
    """{"voice/tuned/likeness/overall": v, "..._lo": lo, "..._hi": hi, ...} from nested estimates."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict) and "ci" in value:
            out.update(_keyed(name, value["value"], value["ci"]))
        elif isinstance(value, dict):
            out.update(_flat(value, name))
        elif isinstance(value, (int, float)):
            out[name] = value
    return out


def _log(tracker, report: dict, summary: dict) -> None:
    tracker.summary({f"eval/{k}": v for k, v in summary.items()})
    rows = [[s["id"], s["shape"], name, o["text"], s["reference"], *(o[k] for k in SAMPLE_COLUMNS[5:])]
            for s in report["samples"] for name, o in s["outputs"].items()]
    tracker.table("eval/samples", SAMPLE_COLUMNS, rows)
