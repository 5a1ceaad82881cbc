"""Stage `eval`: the tuned adapter and its base model on the same held-out rough drafts.

Per model: eval loss (own valid split and the shared held-out set), length ratio per shape,
early-stop and runaway rates, shape match, style signals against the author's own text, chrF.
"""

from __future__ import annotations

import json

from voicetune import metrics
from voicetune.chat import caps, encode_records, end_tokens
from voicetune.greedy import generate
from voicetune.packing import PackedCollator, packed_rows
from voicetune.probes import one_style_per_passage
from voicetune.records import read_jsonl, reference, user_turn

SAMPLE_COLUMNS = ["id", "shape", "model", "output", "reference", "output_words", "reference_words",
                  "length_ratio", "ended"]


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


def model_report(outputs: list[dict], records: list[dict], author: dict, losses: dict) -> tuple[dict, list[dict]]:
    """Length, stop, shape and style metrics of one model's outputs, and per-sample metrics."""
    samples = [{"shape": r["shape"], **metrics.sample_metrics(o["text"], reference(r), r["shape"], o["ended"])}
               for o, r in zip(outputs, records)]
    style = metrics.style_signals([o["text"] for o in outputs])
    return {**losses, **metrics.summarize(samples), "style": style,
            "style_distance": round(metrics.style_distance(style, author), 4),
            "chrf": round(metrics.chrf([o["text"] for o in outputs],
                                       [reference(r) for r in records]), 2)}, samples


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
    valid = read_jsonl(inputs["dataset"] / "valid.jsonl")
    valid = one_style_per_passage(valid, cfg.data.seed)[: cfg.eval.loss_records or None]
    refs = [reference(r) for r in heldout]
    author = metrics.style_signals([reference(r) for r in read_jsonl(inputs["dataset"] / "train.jsonl")])
    report = {"models": {}, "author": author, "placement": {"device": str(model.device), "dtype": str(model.dtype)}, "samples": [dict(id=r["id"], shape=r["shape"], section=r["section"],
              rough=user_turn(r), reference=ref, outputs={}) for r, ref in zip(heldout, refs)]}
    for name in ("tuned", "base"):
        with _adapter(model, enabled=name == "tuned"):
            losses = _losses(cfg, model, tok, ends, valid, heldout)
            outs = generate(model, tok, [r["messages"] for r in heldout], caps(tok, refs, cfg.eval), end_ids)
        report["models"][name], samples = model_report(outs, heldout, author, losses)
        for row, out_, sample in zip(report["samples"], outs, samples):
            row["outputs"][name] = {"text": out_["text"], "ended": out_["ended"], **sample}
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    summary = _summary(report)
    if tracker is not None:
        _log(tracker, report, summary)
    _print(report)
    return summary


def _print(report: dict) -> None:
    """Tuned vs base, one row per measure: the numbers a user looks at first."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="eval: tuned vs base on the held-out drafts")
    for col in ("measure", *report["models"]):
        table.add_column(col)
    rows = [("eval loss", "eval_loss", None), ("held-out loss", "heldout_loss", None),
            ("length ratio (median)", "overall", "length_ratio_median"),
            ("early stop rate", "overall", "early_stop_rate"), ("runaway rate", "overall", "runaway_rate"),
            ("shape match rate", "overall", "shape_match_rate"), ("style distance to author", "style_distance", None),
            ("chrF", "chrf", None)]
    for label, key, sub in rows:
        values = [m[key][sub] if sub else m[key] for m in report["models"].values()]
        table.add_row(label, *("-" if v is None else f"{v:.3f}" for v in values))
    Console().print(table)


def _adapter(model, enabled: bool):
    """Context: the adapter on (tuned model) or off (the base model, same weights otherwise)."""
    import contextlib

    return contextlib.nullcontext() if enabled else model.disable_adapter()


def _losses(cfg, model, tok, ends, valid: list[dict], heldout: list[dict]) -> dict:
    seq = cfg.train.seq_len
    valid_ex, _, _ = encode_records(valid, tok, ends, seq)
    held_ex, _, _ = encode_records(heldout, tok, ends, seq)
    return {"eval_loss": mean_loss(model, valid_ex, seq, tok.pad_token_id, cfg.train.batch_size),
            "heldout_loss": mean_loss(model, held_ex, seq, tok.pad_token_id, cfg.train.batch_size)}


def _summary(report: dict) -> dict:
    """The flat numbers a sweep compares: per model, overall length/stop rates and losses."""
    out = {}
    for name, m in report["models"].items():
        overall = m["overall"]
        out.update({f"{name}/eval_loss": m["eval_loss"], f"{name}/heldout_loss": m["heldout_loss"],
                    f"{name}/length_ratio_median": overall["length_ratio_median"],
                    f"{name}/early_stop_rate": overall["early_stop_rate"],
                    f"{name}/runaway_rate": overall["runaway_rate"],
                    f"{name}/shape_match_rate": overall["shape_match_rate"],
                    f"{name}/style_distance": m["style_distance"], f"{name}/chrf": m["chrf"]})
    return out


def _log(tracker, report: dict, summary: dict) -> None:
    tracker.summary({f"eval/{k}": v for k, v in summary.items()})
    rows = [[s["id"], s["shape"], name, o["text"], s["reference"], o["output_words"], o["reference_words"],
             o["length_ratio"], o["ended"]] for s in report["samples"] for name, o in s["outputs"].items()]
    tracker.table("eval/samples", SAMPLE_COLUMNS, rows)
