"""`voicetune compare`: one self-contained HTML report comparing runs (loss curves, lengths,
stops, style, probe outputs side by side), the local stand-in for a W&B comparison."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from html import escape as esc
from pathlib import Path
from string import Template

from voicetune import plots
from voicetune.errors import UserError
from voicetune.voice import SOURCES as TEXT_SOURCES

RUN_FILE, CONFIG_FILE, REPORT_FILE = "run.json", "config.yaml", "compare.html"
# Stage -> the file its linked output (run_dir/<stage>/) holds for the report.
SOURCES = {"train": "history.json", "eval": "eval.json"}
TEMPLATE = Path(__file__).with_name("report_template.html")
STYLE_COLUMNS = (("hedging_per_1k", "hedging / 1k"), ("cliches_per_1k", "clichés / 1k"),
                 ("contractions_per_1k", "contractions / 1k"),
                 ("mean_sentence_words", "mean sentence words"), ("words", "words"))
RATE_COLUMNS = ("early_stop_rate", "runaway_rate", "shape_match_rate")
# A table cell that is a number, optionally with its interval (ci_num): aligned right.
NUMERIC = re.compile(r'(<b>)?[\d,.\-—]+(<span class="ci">\[[\d,.\-—]+, [\d,.\-—]+\]</span>)?(</b>)?')
# Tuned minus base, as eval.json's voice.paired.tuned_minus_base names them.
PAIRED_COLUMNS = (("length_ratio_median", "length ratio (median)"), ("length_miss_mean", "|length ratio - 1|"),
                  ("likeness_mean", "author-likeness"), ("moved_toward_reference_median", "moved toward reference"),
                  ("all_kept_rate", "all numbers kept"), ("markers_kept_share", "markers kept"),
                  ("hedging_per_1k", "hedging / 1k"), ("cliches_per_1k", "clichés / 1k"), ("chrf", "chrF"))
# Where the cache lives is not an experiment setting: runs from two machines still compare.
NOT_SETTINGS = ("cache_dir",)


@dataclass
class RunRecord:
    """One run dir as the report sees it: manifest, config, and each stage's file or why not."""

    path: Path
    manifest: dict
    config: dict
    data: dict[str, dict | None]
    missing: dict[str, str]
    label: str = ""


def build_report(paths: list[Path], out: Path | None = None) -> Path:
    """Compare the runs under `paths` in one HTML file (default: first path/compare.html)."""
    runs = [load_run(p) for p in find_runs([Path(p) for p in paths])]
    for run, label in zip(runs, labels(runs)):
        run.label = label
    out = Path(out) if out else Path(paths[0]) / REPORT_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(runs), encoding="utf-8")
    return out


def find_runs(paths: list[Path]) -> list[Path]:
    """Run dirs at or under each path (Hydra multirun dirs expand), in natural order."""
    runs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise UserError(f"{path}: not a folder (pass run dirs or a multirun dir)")
        found = sorted(_run_dirs(path), key=lambda p: _natural(str(p)))
        if not found:
            raise UserError(f"{path}: no {RUN_FILE} here or below "
                            "(pass run dirs or a multirun dir)")
        runs += [r for r in found if r not in runs]
    return runs


def _run_dirs(root: Path):
    # os.walk does not follow links, so the stage links into the shared cache are never walked.
    for folder, dirs, files in os.walk(root):
        if RUN_FILE in files:
            dirs.clear()
            yield Path(folder)


def _natural(text: str) -> list:
    # "2_..." sorts before "10_...": Hydra numbers jobs without zero padding.
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def load_run(path: Path) -> RunRecord:
    """Read a run dir; a stage file that is absent is recorded with the reason, not raised."""
    import yaml

    manifest = _read_json(path / RUN_FILE)
    config_file = path / CONFIG_FILE
    try:
        config = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
    except yaml.YAMLError as exc:
        raise UserError(f"{config_file}: not valid YAML ({str(exc).splitlines()[0]})") from None
    data, missing = {}, {}
    for stage, name in SOURCES.items():
        file = path / stage / name
        data[stage] = _read_json(file) if file.exists() else None
        if data[stage] is None:
            missing[stage] = _why_missing(manifest, stage, name)
    return RunRecord(path, manifest, config or {}, data, missing)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _why_missing(manifest: dict, stage: str, name: str) -> str:
    record = next((s for s in manifest.get("stages", []) if s.get("name") == stage), None)
    if record is None:
        return f"no {stage}/{name}: the {stage} stage did not run"
    return f"no {stage}/{name} in the {stage} output"


def flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.epochs": "2", ...} with values written as Hydra overrides."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _override(value)
    return flat


def _override(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_override(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # epochs: 2.0 in the dump, `train.epochs=2` on the command line
    return str(value)


def differing(configs: list[dict]) -> list[str]:
    """Config keys that tell runs apart; a group whose `name` differs counts as one key."""
    flat = [flatten(c) for c in configs]
    diff = [k for k in sorted(set().union(*flat) - set(NOT_SETTINGS))
            if len({f.get(k) for f in flat}) > 1]
    keys: list[str] = []
    for key in diff:
        group = key.split(".")[0]
        shown = group if f"{group}.name" in diff else key
        if shown not in keys:
            keys.append(shown)
    return keys


def labels(runs: list[RunRecord]) -> list[str]:
    """`data=sentence, train.epochs=2`-style labels from what differs; folder names otherwise."""
    keys = differing([r.config for r in runs])
    flat = [flatten(r.config) for r in runs]
    out = [", ".join(f"{k}={f.get(f'{k}.name', f.get(k, '(unset)'))}" for k in keys) for f in flat]
    return [lab if lab and out.count(lab) == 1 else f"{lab} {r.path.name}".strip()
            for lab, r in zip(out, runs)]


def num(value, digits: int = 3) -> str:
    """A number for a table cell: thousands separators, at most `digits` decimals, — for None."""
    if value is None:
        return "—"
    if isinstance(value, int) or digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}".rstrip("0").rstrip(".")


def ci_num(value, ci: list | None, digits: int = 3) -> str:
    """A number with its 95% interval below it, when eval.json has one."""
    if not ci:
        return num(value, digits)
    return f'{num(value, digits)}<span class="ci">[{num(ci[0], digits)}, {num(ci[1], digits)}]</span>'


def _estimate(est: dict | None, digits: int = 3) -> str:
    """A {"value", "ci", "n"} estimate as a cell; — when there is none."""
    return ci_num(est["value"], est["ci"], digits) if est else num(None)


def _run_cell(i: int, run: RunRecord) -> str:
    return f'<span class="run" style="border-color:{plots.color(i)}">{esc(run.label)}</span>'


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    # Cells are HTML already (escaped text or num()); numbers align right.
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{c}</td>' if NUMERIC.fullmatch(c) else f"<td>{c}</td>"
        for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><tr>{th}</tr>{body}</table>'


def _section(anchor: str, title: str, runs: list[RunRecord], stage: str, content: str) -> str:
    notes = "".join(f'<p class="missing">{esc(r.label)}: {esc(r.missing[stage])}</p>'
                    for r in runs if stage in r.missing)
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{notes}{content}</section>'


def _header(runs: list[RunRecord]) -> str:
    keys = differing([r.config for r in runs])
    rows = [[_run_cell(i, r), esc(str(r.path)), esc(r.manifest.get("started", "—")),
             *(esc(r.missing.get(s, "ok")) for s in SOURCES)] for i, r in enumerate(runs)]
    nav = "".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _, _ in SECTIONS)
    return (f"<header><h1>voicetune compare: {len(runs)} runs</h1>"
            f'<p class="meta">generated {time.strftime("%Y-%m-%d %H:%M")} · configs differ in: '
            f'{esc(", ".join(keys) or "nothing")}</p><nav>{nav}</nav></header>'
            + _table(["run", "folder", "started", "train", "eval"], rows))


def _plot(runs: list[RunRecord], stage: str, draw, alt: str) -> str:
    data = {r.label: r.data[stage] for r in runs}
    if all(v is None for v in data.values()):
        return ""
    return f'<img src="{draw(data)}" alt="{esc(alt)}">'


def _loss(runs: list[RunRecord]) -> str:
    return _plot(runs, "train", plots.loss_curves, "eval and train loss per run")


def _lengths(runs: list[RunRecord]) -> str:
    return _plot(runs, "eval", plots.length_ratios, "length ratio per shape, tuned and base")


def _shape_rows(i: int, run: RunRecord) -> list[list[str]]:
    rows = []
    for model, stats in run.data["eval"]["models"].items():
        for shape, st in [*stats["per_shape"].items(), ("all", stats["overall"])]:
            q1, q3 = num(st["length_ratio_q1"], 2), num(st["length_ratio_q3"], 2)
            spread = f'{num(st["length_ratio_median"], 2)} [{q1}–{q3}]'
            ci = st.get("ci", {})
            rows.append([_run_cell(i, run), esc(model), esc(shape), num(st["n"]), spread,
                         ci_num(st["length_ratio_median"], ci.get("length_ratio_median"), 2),
                         *(ci_num(st[k], ci.get(k)) for k in RATE_COLUMNS)])
    return rows


def _rates(runs: list[RunRecord]) -> str:
    rows = [row for i, r in enumerate(runs) if r.data["eval"] for row in _shape_rows(i, r)]
    head = ["run", "model", "shape", "n", "length ratio median [q1–q3]", "median, 95% CI", "early stop",
            "runaway", "shape match"]
    return (_plot(runs, "eval", plots.rates, "early-stop, runaway and shape-match rates")
            + (_table(head, rows) if rows else ""))


def _style(runs: list[RunRecord]) -> str:
    evals = [(i, r, r.data["eval"]) for i, r in enumerate(runs) if r.data["eval"]]
    # Runs of one corpus share the author's signals: one row, unless the corpora differ.
    authors: dict[str, tuple[str, dict]] = {}
    for _, run, e in evals:
        authors.setdefault(json.dumps(e["author"], sort_keys=True), (run.label, e["author"]))
    rows = [["author" if len(authors) == 1 else f"author ({esc(label)})", "",
             *(num(a.get(k), 2) for k, _ in STYLE_COLUMNS), "", "", ""]
            for label, a in authors.values()]
    for i, run, e in evals:
        for model, m in e["models"].items():
            style_ci, ci = m["style"].get("ci", {}), m.get("ci", {})
            rows.append([_run_cell(i, run), esc(model), *(ci_num(m["style"].get(k), style_ci.get(k), 2)
                                                          for k, _ in STYLE_COLUMNS),
                         ci_num(m["style_distance"], ci.get("style_distance")),
                         ci_num(m["chrf"], ci.get("chrf"), 1), num(m["eval_loss"], 4)])
    head = ["", "model", *(t for _, t in STYLE_COLUMNS), "style distance", "chrF", "eval loss"]
    return _table(head, rows, "style") if rows else ""


def _voices(runs: list[RunRecord]) -> list[tuple[int, RunRecord, dict]]:
    """(colour index, run, its eval.json voice block) for runs whose eval has one."""
    return [(i, r, r.data["eval"]["voice"]) for i, r in enumerate(runs)
            if r.data["eval"] and r.data["eval"].get("voice")]


def _voice(runs: list[RunRecord]) -> str:
    voices = _voices(runs)
    if not voices:
        return ""
    notes = "".join(f'<p class="meta">{_run_cell(i, r)} likeness classifier: held-out ROC AUC '
                    f'{num(v["classifier"]["auc"])} (needs ≥ {num(v["classifier"]["min_auc"])}) '
                    + (f'<span class="missing">{esc(v["classifier"]["reason"])}</span>'
                       if v["classifier"]["reason"] else "") + "</p>" for i, r, v in voices)
    # Every run keeps its place (and colour); a refused classifier's run is None, left out.
    usable = {r.label: None for r in runs}
    usable.update({r.label: r.data["eval"] for _, r, v in voices if v["classifier"]["usable"]})
    plot = (f'<img src="{plots.likeness(usable)}" alt="author-likeness per shape: rough, base, tuned, '
            f'reference">' if any(usable.values()) else "")
    return notes + plot + _voice_table(voices) + _paired_table(voices)


def _voice_table(voices) -> str:
    n = next(iter(voices))[2]["copy_ngram"]
    rows = []
    for i, run, v in voices:
        for source in TEXT_SOURCES:
            t = v["texts"].get(source, {})
            meaning, memo = t.get("meaning") or {}, t.get("memorization") or {}
            span = memo.get("longest_copied_span") or {}
            rows.append([_run_cell(i, run), esc(source), _estimate((t.get("likeness") or {}).get("overall")),
                         _estimate(t.get("moved_toward_reference_median")),
                         _estimate(meaning.get("all_kept_rate")), _estimate(meaning.get("markers_kept_share")),
                         _estimate(memo.get(f"copied_{n}gram_share")), num(span.get("max")),
                         _estimate(span.get("median"), 1)])
    head = ["run", "text", "author-likeness (mean)", "moved toward reference (median)", "all numbers kept",
            "markers kept", f"copied {n}-grams", "longest copy (max)", "longest copy (median)"]
    return _table(head, rows, "voice")


def _paired_table(voices) -> str:
    rows = []
    for i, run, v in voices:
        diffs = v["paired"]["tuned_minus_base"]
        rows.append([_run_cell(i, run), *(_difference(diffs.get(key)) for key, _ in PAIRED_COLUMNS)])
    return ("<h3>tuned − base on the same drafts (paired bootstrap; bold: the 95% interval excludes 0)</h3>"
            + _table(["run", *(t for _, t in PAIRED_COLUMNS)], rows, "paired"))


def _difference(est: dict | None) -> str:
    cell = _estimate(est)
    ci = est and est["ci"]
    return f"<b>{cell}</b>" if ci and (ci[0] > 0 or ci[1] < 0) else cell


def last_generations(history: dict | None) -> tuple[int | None, dict[str, dict]]:
    """The last eval step that has generations and {probe_id: generation} at that step."""
    gens = (history or {}).get("generations", [])
    if not gens:
        return None, {}
    step = max(g["step"] for g in gens)
    return step, {g["probe_id"]: g for g in gens if g["step"] == step}


def _generation_cell(gen: dict | None) -> str:
    if gen is None:
        return '<span class="meta">no generation</span>'
    ended = "ended" if gen["ended"] else '<span class="no-end">no end token</span>'
    meta = f'{num(gen["output_words"])} words · ratio {num(gen["length_ratio"], 2)} · {ended}'
    return f'<div class="text">{esc(gen["output"])}</div><div class="gen-meta">{meta}</div>'


def _probes(runs: list[RunRecord]) -> str:
    last = [last_generations(r.data["train"]) for r in runs]
    probes: dict[str, dict] = {}
    for _, gens in last:
        for pid, g in gens.items():
            probes.setdefault(pid, g)
    if not probes:
        return ""
    head = "".join(f"<th>{_run_cell(i, r)} step {num(step)}</th>"
                   for i, (r, (step, _)) in enumerate(zip(runs, last)))
    rows = "".join(
        f'<tr class="probe-row"><td><b>{esc(pid)}</b><div class="meta">{esc(g["shape"])}</div></td>'
        f'<td class="text">{esc(g["prompt"])}</td><td class="text">{esc(g["reference"])}</td>'
        + "".join(f"<td>{_generation_cell(gens.get(pid))}</td>" for _, gens in last) + "</tr>"
        for pid, g in probes.items())
    return (f'<table class="probes"><tr><th style="width:8em">probe</th><th>rough prompt</th>'
            f"<th>reference</th>{head}</tr>{rows}</table>")


def _training(runs: list[RunRecord]) -> str:
    rows = []
    for i, r in enumerate(runs):
        if r.data["train"] is None:
            continue
        s, evals = r.data["train"].get("summary", {}), r.data["train"].get("eval", [])
        losses = [e["eval_loss"] for e in evals if e.get("eval_loss") is not None]
        runtime = s.get("runtime_s")
        rows.append([_run_cell(i, r), num(s.get("steps")),
                     num(runtime / 60, 1) + " min" if runtime is not None else "—",
                     num(s.get("real_tokens_per_s"), 1), num(s.get("padding_efficiency")),
                     num(s.get("trainable_params")), num(losses[-1] if losses else None, 4),
                     num(min(losses) if losses else None, 4)])
    head = ["run", "steps", "runtime", "real tokens/s", "padding efficiency", "trainable params",
            "last eval loss", "best eval loss"]
    return _table(head, rows) if rows else ""


# anchor, heading, the stage whose file feeds it (its absence is noted there), content.
SECTIONS = (
    ("loss", "Eval loss", "train", _loss),
    ("lengths", "Length ratio per shape", "eval", _lengths),
    ("rates", "Early stop, runaway, shape match", "eval", _rates),
    ("style", "Style signals", "eval", _style),
    ("voice", "Voice: author-likeness, meaning kept, memorization", "eval", _voice),
    ("probes", "Probe outputs at the last eval step", "train", _probes),
    ("training", "Training summary", "train", _training),
)


def render(runs: list[RunRecord]) -> str:
    """The whole report page for labelled runs."""
    body = _header(runs) + "".join(_section(anchor, title, runs, stage, content(runs))
                                   for anchor, title, stage, content in SECTIONS)
    title = f"voicetune compare: {' vs '.join(r.label for r in runs)}"
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(title=esc(title), body=body)
