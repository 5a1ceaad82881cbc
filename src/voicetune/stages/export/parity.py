"""Parity: load every artifact back with its own runtime, prove the prompt is the training prompt and
that the model stops.

For each runtime: the persona + a rough draft rendered through the artifact's own chat template
must give the training token ids (with the system turn, without it -> the persona by default,
and a whole conversation); the first `export.parity_probes` held-out drafts (sentences and
paragraphs in turn) are generated greedily and each reply records its finish reason, length ratio to the
reference and any template token that leaked into the text. Parity asks whether an artifact
behaves like the model it came from and stops, not how well it writes (the eval stage's 20
drafts do that), so its drafts are the short ones: a sentence's cap is ~60 tokens, an abstract's ~500.
A runtime that is slow here (mlx[cpu] without Metal) generates only `export.parity_slow_probes` of
them, those with the smallest caps, and parity.md says so.

The gate: a runtime passes when its renderings are identical, nothing leaked and it ended on an
end token on at least `export.parity_min_stop_rate` of the drafts; an artifact passes when every
runtime that loads it does. A failed artifact stays in the run, marked failed in parity.md and in
the stage's metrics (`failed`, one line each, which the run's summary prints).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from voicetune.chat import caps
from voicetune.errors import UserError
from voicetune.records import prompt, read_jsonl, reference

# Text a chat UI shows when a model runs past its end token or the runtime ignores it.
TEMPLATE_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|begin_of_text|>", "<|end_of_text|>", "</s>")
ROLE_HEADER = re.compile(r"(^|\n)(system|user|assistant)\n")  # a header whose tokens were hidden


def check(cfg, tok, inputs: dict[str, Path], adapter: Path, artifacts: dict[str, Path], out: Path, cache) -> dict:
    """Run every runtime that works here; write parity.json and parity.md into `out`."""
    from rich.console import Console

    from voicetune.stages.export import runtimes

    panel = by_shape(read_jsonl(inputs["heldout"] / "heldout.jsonl"))
    if not panel:
        raise UserError("export: the held-out set has no drafts to render")
    panel = panel[: max(1, cfg.export.parity_probes)]
    convs = [prompt(r) for r in panel]
    refs = [reference(r) for r in panel]
    limits = caps(tok, refs, cfg.eval)
    expected = training_renderings(tok, panel[0]["messages"])
    markers = leak_markers(tok, cfg.model.end_tokens)
    rows, console = [], Console(stderr=True)
    for runtime in runtimes.available(cfg, adapter, artifacts, cache):
        console.print(f"parity: {runtime.name}")
        row = {"artifact": runtime.artifact, "runtime": runtime.name}
        row.update(compare_renderings(runtime, panel[0]["messages"], expected))
        reused = eval_replies(inputs, panel, limits) if runtime.artifact == "adapter" else None
        if reused and cfg.export.parity_probes:
            row.update(summarize(reused, refs, markers), replies_from="eval")
            row["replies"] = [{"draft": p["id"], "shape": p["shape"], **r} for p, r in zip(panel, reused)]
        elif runtime.generates and cfg.export.parity_probes:
            take = drafts_for(runtime, limits, cfg.export)
            replies = runtime.generate([convs[i] for i in take], [limits[i] for i in take])
            row.update(summarize(replies, [refs[i] for i in take], markers))
            row["replies"] = [{"draft": panel[i]["id"], "shape": panel[i]["shape"], **r} for i, r in zip(take, replies)]
            if len(take) < len(panel):
                row["of_panel"] = len(panel)
        runtime.close()
        rows.append(row)
    table = {"rows": rows, "summary": summary(rows, cfg.export.parity_min_stop_rate)}
    (out / "parity.json").write_text(json.dumps(table, indent=2))
    (out / "parity.md").write_text(markdown(rows, table["summary"]))
    print_table(rows, table["summary"], console)
    return table


def eval_replies(inputs: dict[str, Path], panel: list[dict], limits: list[int]) -> list[dict] | None:
    """The eval stage's tuned replies to the panel's drafts under the same caps, or None.

    The eval stage generated them with the adapter under transformers + peft, greedily: the
    adapter's row, which parity would otherwise generate again (25 s of the default run's export).
    """
    path = Path(inputs["eval"]) / "eval.json" if inputs.get("eval") else None
    if path is None or not path.is_file():
        return None
    tuned = {s["id"]: s["outputs"].get("tuned") for s in json.loads(path.read_text())["samples"]}
    found = [tuned.get(p["id"]) for p in panel]
    if any(o is None or o.get("cap") != cap or "tokens" not in o for o, cap in zip(found, limits)):
        return None
    return [{"text": o["text"], "raw": o["raw"], "finish": "stop" if o["ended"] else "length", "tokens": o["tokens"],
             "seconds": None} for o in found]


def drafts_for(runtime, limits: list[int], export) -> list[int]:
    """Which panel drafts a runtime generates: all, or the `export.parity_slow_probes` with the
    smallest caps for a runtime that says it is slow here (mlx[cpu] without Metal), in panel order."""
    if not getattr(runtime, "slow", False) or export.parity_slow_probes >= len(limits):
        return list(range(len(limits)))
    shortest = sorted(range(len(limits)), key=lambda i: limits[i])[: export.parity_slow_probes]
    return sorted(shortest)


# Sentences and paragraphs in turn (caps ~60 and ~150-300 tokens on the demo), then the long
# shapes in turn, for a held-out set short of the first two.
SHORT, LONG = ("sentence", "paragraph"), ("abstract", "section")


def by_shape(drafts: list[dict]) -> list[dict]:
    """Sentences and paragraphs in turn, then abstracts and sections in turn: the first 4 are 2 and 2."""
    order = SHORT + LONG
    seen: dict[str, int] = {}
    keyed = []
    for draft in drafts:
        n = seen[draft["shape"]] = seen.get(draft["shape"], -1) + 1
        rank = order.index(draft["shape"]) if draft["shape"] in order else len(order)
        keyed.append(((rank >= len(SHORT), n, rank), draft))
    return [draft for _, draft in sorted(keyed, key=lambda kv: kv[0])]


def training_renderings(tok, messages: list[dict]) -> dict[str, list[int]]:
    """Token ids the model was trained on: the prompt, and the whole conversation."""
    def ids(msgs):
        return list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"])

    return {"prompt": ids(messages[:2]), "default_persona": ids(messages[:2]), "conversation": ids(messages)}


def compare_renderings(runtime, messages: list[dict], expected: dict[str, list[int]]) -> dict:
    """identical / MISMATCH / n/a per rendering, with the first differing position on a mismatch."""
    asked = {"prompt": messages[:2], "default_persona": messages[1:2], "conversation": messages}
    result = {}
    for name, msgs in asked.items():
        got = runtime.render(msgs)
        if got is None:
            result[name] = "n/a"
            continue
        want = expected[name]
        if got == want:
            result[name] = "identical"
        else:
            at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            result[name] = f"MISMATCH at token {at} ({len(got)} vs {len(want)} ids)"
    return result


def leak_markers(tok, end_tokens) -> list[str]:
    """Template and special-token strings that must never appear in a reply."""
    return sorted(set(TEMPLATE_MARKERS) | set(end_tokens) | {t for t in tok.all_special_tokens if len(t) > 2})


def leaks(text: str, markers: list[str]) -> list[str]:
    found = [m for m in markers if m in text]
    if ROLE_HEADER.search(text):
        found.append("role header")
    return found


def summarize(replies: list[dict], refs: list[str], markers: list[str]) -> dict:
    """Stops, stop rate, length ratio (median, words) and leaks over the probe panel."""
    ratios = [len(r["text"].split()) / max(1, len(ref.split())) for r, ref in zip(replies, refs)]
    leaked = [m for r in replies for m in leaks(r["raw"], markers)]
    for r in replies:
        r["leaks"] = leaks(r["raw"], markers)
    stopped = sum(r["finish"] == "stop" for r in replies)
    return {"probes": len(replies), "stopped": stopped, "stop_rate": round(stopped / max(1, len(replies)), 3),
            "length_ratio_median": round(statistics.median(ratios), 3), "leaks": sorted(set(leaked)),
            "tokens_per_s": None if any(r["seconds"] is None for r in replies) else
            round(sum(r["tokens"] for r in replies) / max(1e-9, sum(r["seconds"] for r in replies)), 1)}


RENDERINGS = ("prompt", "default_persona", "conversation")


def verdict(row: dict, min_stop_rate: float) -> str | None:
    """Why one runtime fails parity (template, leak, or it does not stop), or None when it passes."""
    mismatched = [k for k in RENDERINGS if str(row.get(k, "")).startswith("MISMATCH")]
    if mismatched:
        return f"template mismatch ({', '.join(mismatched)})"
    if row.get("leaks"):
        return f"leaked {', '.join(row['leaks'])}"
    if "probes" in row and row["stop_rate"] < min_stop_rate:
        return (f"stopped on {row['stopped']}/{row['probes']} drafts (stop rate {row['stop_rate']:.2f} "
                f"< export.parity_min_stop_rate {min_stop_rate})")
    return None


def summary(rows: list[dict], min_stop_rate: float) -> dict:
    """Pass/fail per artifact: every runtime that loads it renders identically, leaks nothing and stops."""
    mismatched = [f"{r['runtime']}:{k}" for r in rows for k in RENDERINGS if str(r.get(k, "")).startswith("MISMATCH")]
    failed: dict[str, list[str]] = {}
    for r in rows:
        reason = verdict(r, min_stop_rate)
        r["gate"] = "pass" if reason is None else "FAILED"
        if reason:
            failed.setdefault(r["artifact"], []).append(f"{r['runtime']} {reason}")
    return {"runtimes": [r["runtime"] for r in rows], "template_mismatches": mismatched,
            "leaks": [r["runtime"] for r in rows if r.get("leaks")], "min_stop_rate": min_stop_rate,
            "stop_rates": {r["runtime"]: r["stop_rate"] for r in rows if "stop_rate" in r},
            "failed": {artifact: "; ".join(reasons) for artifact, reasons in failed.items()},
            "passed": [a for a in dict.fromkeys(r["artifact"] for r in rows) if a not in failed],
            "ok": not failed}


def failed_lines(result: dict) -> list[str]:
    """One line per artifact that failed parity, for the run's summary."""
    return [f"{artifact} FAILED parity: {why}" for artifact, why in result["failed"].items()]


SLOW_NOTE = ("mlx[cpu] without Metal computes on one core with reference BLAS (~9 tok/s on 2 cores, prompt and "
             "reply, 2026-12-02), so it takes export.parity_slow_probes of the panel; on a Mac it takes all.")

# Columns only a runtime that generates fills (Ollama and transformers gguf_file= only render).
GENERATED = ("stopped", "probes", "stop_rate", "length_ratio_median", "leaks", "tokens_per_s")
COLUMNS = ("artifact", "runtime", "prompt", "default_persona", "conversation", "stopped", "probes", "stop_rate",
           "length_ratio_median", "leaks", "tokens_per_s", "gate")


def markdown(rows: list[dict], result: dict) -> str:
    """The table, then one line per failed artifact (or that every artifact passed)."""
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c, "template only" if c in GENERATED else "")) for c in COLUMNS)
                   + " |\n" for r in rows)
    gate = (f"\nGate: identical templates, no leaked template token, an end token before the cap on at least "
            f"{result['min_stop_rate']} of the drafts.\n\n")
    gate += "".join(f"{r['runtime']}: the eval stage's replies to these drafts (same adapter, same caps), not "
                    "generated again.\n\n" for r in rows if r.get("replies_from") == "eval")
    gate += "".join(f"{r['runtime']} generated {r['probes']} of the {r['of_panel']} drafts, those with the smallest "
                    f"caps: {SLOW_NOTE}\n\n" for r in rows if "of_panel" in r)
    verdicts = "".join(f"- **{line}**\n" for line in failed_lines(result)) or "- every artifact passed\n"
    return head + body + gate + verdicts


def _cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "none"
    if value is None:
        return "-"
    return str(value) if value != "" else "not run here"


def print_table(rows: list[dict], result: dict, console) -> None:
    from rich.table import Table

    table = Table(title="export parity: template ids vs training, greedy held-out drafts")
    for col in ("runtime", "template", "stopped", "length ratio", "leaks", "tok/s", "gate"):
        table.add_column(col)
    for r in rows:
        checks = [r[k] for k in RENDERINGS]
        template = "identical" if all(c in ("identical", "n/a") for c in checks) else "[red]MISMATCH[/]"
        stopped = f"{r['stopped']}/{r['probes']}" if "probes" in r else "-"
        stopped += f" (of {r['of_panel']})" if "of_panel" in r else ""
        gate = "pass" if r["gate"] == "pass" else "[red]FAILED[/]"
        table.add_row(r["runtime"], template, stopped, str(r.get("length_ratio_median", "-")),
                      _cell(r.get("leaks", "-")), _cell(r.get("tokens_per_s")), gate)
    console.print(table)
    for line in failed_lines(result):
        console.print(f"[red]parity[/]: {line}", soft_wrap=True)
