"""Parity: load every artifact back with its own runtime, prove the prompt is the training prompt and
that the model stops.

For each runtime: the persona + a rough draft rendered through the artifact's own chat template
must give the training token ids (with the system turn, without it -> the persona by default,
and a whole conversation); the probe panel is generated greedily and each reply records its
finish reason, length ratio to the reference and any template token that leaked into the text.
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

    panel = by_shape(read_jsonl(inputs["probes"] / "probes.jsonl"))
    if not panel:
        raise UserError("export: the probe panel has no drafts to render")
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
        if runtime.generates and cfg.export.parity_probes:
            replies = runtime.generate(convs, limits)
            row.update(summarize(replies, refs, markers))
            row["replies"] = [{"probe": p["probe_id"], **r} for p, r in zip(panel, replies)]
        runtime.close()
        rows.append(row)
    table = {"rows": rows, "summary": summary(rows)}
    (out / "parity.json").write_text(json.dumps(table, indent=2))
    (out / "parity.md").write_text(markdown(rows))
    print_table(rows, console)
    return table


SHAPE_ORDER = ("paragraph", "abstract", "section")


def by_shape(panel: list[dict]) -> list[dict]:
    """The probes with shapes taken in turn, so the first few cover paragraph and abstract."""
    rank = {shape: i for i, shape in enumerate(SHAPE_ORDER)}
    seen: dict[str, int] = {}
    keyed = []
    for probe in panel:
        n = seen[probe["shape"]] = seen.get(probe["shape"], -1) + 1
        keyed.append(((n, rank.get(probe["shape"], len(rank))), probe))
    return [probe for _, probe in sorted(keyed, key=lambda kv: kv[0])]


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
    """Stops, length ratio (median, words) and leaks over the probe panel."""
    ratios = [len(r["text"].split()) / max(1, len(ref.split())) for r, ref in zip(replies, refs)]
    leaked = [m for r in replies for m in leaks(r["raw"], markers)]
    for r in replies:
        r["leaks"] = leaks(r["raw"], markers)
    return {"probes": len(replies), "stopped": sum(r["finish"] == "stop" for r in replies),
            "length_ratio_median": round(statistics.median(ratios), 3), "leaks": sorted(set(leaked)),
            "tokens_per_s": round(sum(r["tokens"] for r in replies) / max(1e-9, sum(r["seconds"] for r in replies)), 1)}


def summary(rows: list[dict]) -> dict:
    """Pass/fail per artifact: templates identical and nothing leaked."""
    mismatched = [f"{r['runtime']}:{k}" for r in rows for k in ("prompt", "default_persona", "conversation")
                  if str(r.get(k, "")).startswith("MISMATCH")]
    leaked = [r["runtime"] for r in rows if r.get("leaks")]
    return {"runtimes": [r["runtime"] for r in rows], "template_mismatches": mismatched, "leaks": leaked,
            "ok": not mismatched and not leaked}


COLUMNS = ("artifact", "runtime", "prompt", "default_persona", "conversation", "stopped", "probes",
           "length_ratio_median", "leaks", "tokens_per_s")


def markdown(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(_cell(r.get(c, "")) for c in COLUMNS) + " |\n" for r in rows)
    return head + body


def _cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value) if value != "" else "not run here"


def print_table(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="export parity: template ids vs training, greedy held-out drafts")
    for col in ("runtime", "template", "stopped", "length ratio", "leaks", "tok/s"):
        table.add_column(col)
    for r in rows:
        checks = [r[k] for k in ("prompt", "default_persona", "conversation")]
        template = "identical" if all(c in ("identical", "n/a") for c in checks) else "[red]MISMATCH[/]"
        stopped = f"{r['stopped']}/{r['probes']}" if "probes" in r else "-"
        table.add_row(r["runtime"], template, stopped, str(r.get("length_ratio_median", "-")),
                      _cell(r.get("leaks", "-")), str(r.get("tokens_per_s", "-")))
    console.print(table)
    failed = summary(rows)
    if not failed["ok"]:
        console.print(f"[red]parity FAILED[/]: mismatches {failed['template_mismatches']}, leaks {failed['leaks']}")
