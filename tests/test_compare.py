"""`voicetune compare`: run dirs as the pipeline writes them -> one self-contained HTML report."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from voicetune import cli
from voicetune.compare import build_report, differing, find_runs, labels, load_run
from voicetune.errors import UserError

PROBES = {"probe-alpha": "paragraph", "probe-beta": "section", "probe-gamma": "abstract"}
SHAPES = ("paragraph", "section", "abstract")
# Distinct numbers per run, so a table cell can only come from its own eval.json / history.json.
NUMBERS = {
    "sentence": dict(eval_loss=(1.8123, 1.2345), early=0.75, runaway=0.05, match=0.25,
                     chrf=31.4, distance=0.213, hedging=4.12, ratio=0.31, tps=812.5, pad=0.62,
                     ended=True),
    "shape_mix": dict(eval_loss=(1.9456, 1.5678), early=0.15, runaway=0.2, match=0.85,
                      chrf=47.9, distance=0.087, hedging=2.37, ratio=0.96, tps=1634.8, pad=0.91,
                      ended=False),
}
BASE = dict(early=0.55, runaway=0.35, match=0.45, chrf=22.2, distance=0.444, hedging=9.81)
# The voice block: shape_mix's classifier passes its check, sentence's is refused (AUC 0.61).
VOICE = {"sentence": dict(auc=0.61, likeness=None, kept=0.35, copied=0.012, span=17, diff=0.045),
         "shape_mix": dict(auc=0.93, likeness=0.71, kept=0.85, copied=0.003, span=9, diff=0.237)}
AUTHOR = {"words": 18000, "hedging_per_1k": 3.33, "cliches_per_1k": 0.11,
          "contractions_per_1k": 0.44, "mean_sentence_words": 23.5}


def config(data: str, epochs: int, cache: Path) -> dict:
    """A composed config as run.py dumps it (only the parts labels care about)."""
    shapes = {"sentence": 1.0} if data == "sentence" else {"paragraph": 0.7, "section": 0.15,
                                                           "abstract": 0.15}
    return {"corpus": {"name": "demo", "path": "demo"},
            "data": {"name": data, "shapes": shapes, "valid_fraction": 0.1, "seed": 0},
            "train": {"name": "cpu_tiny", "epochs": float(epochs), "lr": 0.0005},
            "lora": {"r": 16, "targets": ["q_proj", "v_proj"]},
            "stages": ["extract", "train", "eval"], "cache_dir": str(cache),
            "experiment": "shape_ablation"}


def stats(n: int, ratio: float, early: float, runaway: float, match: float) -> dict:
    return {"n": n, "length_ratio_median": ratio, "length_ratio_q1": ratio - 0.1,
            "length_ratio_q3": ratio + 0.1, "early_stop_rate": early, "runaway_rate": runaway,
            "shape_match_rate": match}


def model(nums: dict, eval_loss: float | None, ratio: float) -> dict:
    return {"eval_loss": eval_loss, "style_distance": nums["distance"], "chrf": nums["chrf"],
            "per_shape": {s: stats(2, ratio, nums["early"], nums["runaway"], nums["match"])
                          for s in SHAPES},
            "overall": stats(6, ratio, nums["early"], nums["runaway"], nums["match"]),
            "style": {**AUTHOR, "hedging_per_1k": nums["hedging"]}}


def output(ratio: float, ended: bool) -> dict:
    return {"text": "x", "ended": ended, "output_words": int(100 * ratio), "length_ratio": ratio}


def est(value: float | None, width: float = 0.1, n: int = 6) -> dict | None:
    return None if value is None else {"value": value, "ci": [round(value - width, 4), round(value + width, 4)], "n": n}


def voice_block(data: str) -> dict:
    """eval.json's voice block as voicetune.voice writes it, with distinct numbers per run."""
    v = VOICE[data]
    usable = v["likeness"] is not None
    likeness = {src: {"overall": est(p), "per_shape": {s: est(p, n=2) for s in SHAPES}} if usable else None
                for src, p in (("rough", 0.12), ("base", 0.33), ("tuned", v["likeness"]), ("reference", 0.88))}
    texts = {src: {"likeness": likeness[src]} for src in likeness}
    for src in ("base", "tuned", "reference"):
        texts[src]["meaning"] = {"all_kept_rate": est(v["kept"] if src == "tuned" else 0.5),
                                 "markers_kept_share": est(0.9)}
        texts[src]["memorization"] = {"copied_8gram_share": est(v["copied"] if src == "tuned" else 0.0, 0.001),
                                      "longest_copied_span": {"max": v["span"] if src == "tuned" else 5,
                                                              "median": est(4.0, 1)}}
    return {"classifier": {"auc": v["auc"], "min_auc": 0.7, "usable": usable,
                           "reason": None if usable else "held-out ROC AUC 0.610 < eval.likeness_min_auc 0.7"},
            "copy_ngram": 8, "texts": texts,
            "paired": {"tuned_minus_base": {"likeness_mean": est(v["diff"], 0.2 if usable else 0.01),
                                            "all_kept_rate": est(-0.05, 0.2)}}}


def evaluation(data: str) -> dict:
    nums = NUMBERS[data]
    samples = [{"id": f"s{i}", "shape": shape, "section": "results", "rough": "r", "reference": "y",
                "outputs": {"tuned": output(nums["ratio"] + 0.05 * i, nums["ended"]),
                            "base": output(1.4 - 0.05 * i, False)}}
               for shape in SHAPES for i in range(2)]
    return {"models": {"tuned": model(nums, nums["eval_loss"][-1], nums["ratio"]),
                       "base": model(BASE, 2.5, 1.4)},
            "author": AUTHOR, "samples": samples, "voice": voice_block(data)}


def generation(data: str, step: int, probe: str, shape: str) -> dict:
    nums = NUMBERS[data]
    text = f"[{data}] final <b>polished</b> {shape}" if step == 40 else f"[{data}] early draft"
    return {"step": step, "probe_id": probe, "shape": shape, "output": text,
            "prompt": f"rough {shape} draft <i>as dictated</i>",
            "reference": f"published {shape} & reference", "output_words": 42,
            "reference_words": 50, "length_ratio": nums["ratio"], "ended": nums["ended"]}


def history(data: str) -> dict:
    nums = NUMBERS[data]
    return {"train": [{"step": s, "loss": nums["eval_loss"][0] + 1 - s / 40,
                       "learning_rate": 5e-4, "tokens_per_s": 900.0} for s in range(5, 45, 5)],
            "eval": [{"step": s, "eval_loss": loss}
                     for s, loss in zip((20, 40), nums["eval_loss"])],
            "generations": [generation(data, s, p, shape) for s in (20, 40)
                            for p, shape in PROBES.items()],
            "summary": {"padding_efficiency": nums["pad"], "real_tokens_per_s": nums["tps"],
                        "steps": 40, "runtime_s": 600.0, "trainable_params": 1843200}}


def make_run(run_dir: Path, cache: Path, data: str, epochs: int = 1,
             stages: tuple[str, ...] = ("train", "eval")) -> Path:
    """A run dir like the pipeline's: run.json, config.yaml, stage links into the cache."""
    run_dir.mkdir(parents=True)
    records = []
    for stage, name, content in (("train", "history.json", history(data)),
                                 ("eval", "eval.json", evaluation(data))):
        if stage not in stages:
            continue
        out = cache / stage / run_dir.name
        out.mkdir(parents=True)
        (out / name).write_text(json.dumps(content))
        (run_dir / stage).symlink_to(out, target_is_directory=True)
        records.append({"name": stage, "status": "miss", "key": "k", "output": str(out),
                        "metrics": {}})
    (run_dir / "run.json").write_text(json.dumps({"started": "2026-11-02T10:00:00",
                                                  "stages": records}))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config(data, epochs, cache)))
    return run_dir


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    """multirun/shape_ablation/<time>/{0_data=sentence,1_data=shape_mix} as Hydra lays it out."""
    root = tmp_path_factory.mktemp("compare")
    sweep = root / "multirun" / "shape_ablation" / "2026-11-02_10-00-00"
    for n, data in enumerate(NUMBERS):
        make_run(sweep / f"{n}_data={data}", root / "cache", data)
    return sweep


@pytest.fixture(scope="module")
def report(multirun) -> str:
    out = build_report([multirun])
    assert out == multirun / "compare.html"
    return out.read_text(encoding="utf-8")


def section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section #{anchor}"
    return match.group(1)


def test_labels_name_what_differs(tmp_path):
    runs = [make_run(tmp_path / f"r{i}", tmp_path / "cache", data, epochs) for i, (data, epochs)
            in enumerate([("sentence", 1), ("shape_mix", 1), ("shape_mix", 2)])]
    loaded = [load_run(r) for r in runs]
    # A group whose name differs is one key (data=...), not its many leaves (data.shapes.*).
    assert differing([r.config for r in loaded]) == ["data", "train.epochs"]
    assert labels(loaded) == ["data=sentence, train.epochs=1", "data=shape_mix, train.epochs=1",
                              "data=shape_mix, train.epochs=2"]
    assert labels(loaded[1:]) == ["train.epochs=1", "train.epochs=2"]
    # Same settings (the cache may live elsewhere): the folder names tell the runs apart.
    twin = make_run(tmp_path / "twin", tmp_path / "cache2", "sentence")
    assert labels([loaded[0], load_run(twin)]) == ["r0", "twin"]


def test_find_runs_expands_a_multirun_dir_in_job_order(tmp_path):
    for job in ("10_train.epochs=3", "2_train.epochs=2", "0_train.epochs=1"):
        (tmp_path / "sweep" / job).mkdir(parents=True)
        (tmp_path / "sweep" / job / "run.json").write_text("{}")
    found = find_runs([tmp_path / "sweep", tmp_path / "sweep" / "0_train.epochs=1"])
    assert [p.name for p in found] == ["0_train.epochs=1", "2_train.epochs=2", "10_train.epochs=3"]


def test_report_labels_runs_and_embeds_every_image(report):
    assert "<title>voicetune compare: data=sentence vs data=shape_mix</title>" in report
    header = report.split("</header>")[0]
    assert "2 runs" in header and "configs differ in: data" in header
    for label in ("data=sentence", "data=shape_mix"):
        assert report.count(label) >= 6  # header, plots' tables, probes, training
    images = re.findall(r'<img src="([^"]+)"', report)
    assert len(images) == 4  # loss curves, length ratios, rates, author-likeness
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing to fetch: every link is an in-page anchor, no scripts or stylesheets.
    assert set(re.findall(r'href="(.)', report)) == {"#"}
    assert "<script" not in report and "<link" not in report
    assert len(re.findall(r"\ssrc=", report)) == len(images)


def test_tables_show_the_numbers_from_eval_and_history(report):
    style, rates, training = (section(report, a) for a in ("style", "rates", "training"))
    assert '<td class="num">3.33</td>' in style  # the author row, once
    assert style.count('<td class="num">3.33</td>') == 1
    for nums in (*NUMBERS.values(), BASE):
        for value in (nums["chrf"], nums["distance"], nums["hedging"]):
            assert f'<td class="num">{value}</td>' in style
        for value in (nums["early"], nums["runaway"], nums["match"]):
            assert f'<td class="num">{value}</td>' in rates
    for nums in NUMBERS.values():
        assert f'<td class="num">{nums["eval_loss"][-1]}</td>' in style
        assert f'{nums["ratio"]} [{round(nums["ratio"] - 0.1, 2)}–' in rates
        assert f'<td class="num">{nums["tps"]:,}</td>' in training
        assert f'<td class="num">{nums["pad"]}</td>' in training
        assert f'<td class="num">{min(nums["eval_loss"])}</td>' in training
    assert "10 min" in training and '<td class="num">1,843,200</td>' in training


def test_voice_section_shows_estimates_intervals_and_a_refused_classifier(report):
    voice = section(report, "voice")
    assert "held-out ROC AUC 0.93" in voice and "held-out ROC AUC 0.61" in voice
    assert "held-out ROC AUC 0.610 &lt; eval.likeness_min_auc 0.7" in voice  # why sentence has no scores
    assert '<td class="num">0.71<span class="ci">[0.61, 0.81]</span></td>' in voice
    for v in VOICE.values():
        assert f'<td class="num">{v["kept"]}<span class="ci">' in voice
        assert f'<td class="num">{v["copied"]}<span class="ci">' in voice and f'<td class="num">{v["span"]}</td>' in voice
    # Paired: shape_mix's likeness gain excludes 0 (bold), sentence's does not; a -0.05 [-0.25, 0.15] is plain.
    assert '<td class="num"><b>0.237<span class="ci">[0.037, 0.437]</span></b></td>' in voice
    assert '<td class="num"><b>0.045' in voice  # [0.035, 0.055]
    assert "<b>-0.05" not in voice


def test_intervals_beside_the_numbers_when_eval_has_them(tmp_path):
    run = make_run(tmp_path / "r", tmp_path / "cache", "shape_mix")
    data = json.loads((run / "eval" / "eval.json").read_text())
    tuned = data["models"]["tuned"]
    tuned["overall"]["ci"] = {"length_ratio_median": [0.81, 1.02], "early_stop_rate": [0.05, 0.3],
                              "runaway_rate": [0.1, 0.35], "shape_match_rate": [0.7, 0.95]}
    tuned["style"]["ci"] = {"hedging_per_1k": [1.5, 3.25]}
    tuned["ci"] = {"chrf": [41.25, 52.5], "style_distance": [0.05, 0.12]}
    (run / "eval" / "eval.json").write_text(json.dumps(data))
    html = build_report([run]).read_text()
    rates, style = section(html, "rates"), section(html, "style")
    assert '<td class="num">0.15<span class="ci">[0.05, 0.3]</span></td>' in rates
    assert '<td class="num">0.96<span class="ci">[0.81, 1.02]</span></td>' in rates
    assert '<td class="num">2.37<span class="ci">[1.5, 3.25]</span></td>' in style
    assert '<td class="num">47.9<span class="ci">[41.2, 52.5]</span></td>' in style


def test_an_eval_from_before_voice_renders_without_it(tmp_path):
    run = make_run(tmp_path / "r", tmp_path / "cache", "shape_mix")
    data = json.loads((run / "eval" / "eval.json").read_text())
    del data["voice"]
    (run / "eval" / "eval.json").write_text(json.dumps(data))
    html = build_report([run]).read_text()
    assert len(re.findall(r'<img src="', html)) == 3 and "ROC AUC" not in section(html, "voice")


def test_probes_side_by_side_at_the_last_step_escaped(report):
    probes = section(report, "probes")
    assert probes.count('class="probe-row"') == len(PROBES)
    for probe, shape in PROBES.items():
        assert probes.count(probe) == 1
        assert f"rough {shape} draft &lt;i&gt;as dictated&lt;/i&gt;" in probes
        assert f"published {shape} &amp; reference" in probes
        for data in NUMBERS:
            assert f"[{data}] final &lt;b&gt;polished&lt;/b&gt; {shape}" in probes
    assert "early draft" not in probes and "<b>polished" not in probes
    assert probes.count("no end token") == len(PROBES)  # shape_mix's outputs did not end
    assert probes.count("step 40") == len(NUMBERS)


def test_missing_stage_outputs_are_reported_not_raised(multirun, tmp_path):
    half = make_run(tmp_path / "trained_only", tmp_path / "cache", "shape_mix", epochs=3,
                    stages=("train",))
    bare = make_run(tmp_path / "nothing", tmp_path / "cache", "sentence", epochs=2, stages=())
    html = build_report([multirun, half, bare], tmp_path / "out" / "report.html").read_text()
    assert "train.epochs=3" in html
    assert html.count("no eval/eval.json: the eval stage did not run") >= 4
    assert "no train/history.json: the train stage did not run" in html
    probes = section(html, "probes")
    assert probes.count('class="probe-row"') == len(PROBES)
    assert "no generation" in probes  # the run without history still has its column


def test_eval_without_base_model_or_eval_loss(tmp_path):
    run = make_run(tmp_path / "r", tmp_path / "cache", "shape_mix")
    data = json.loads((run / "eval" / "eval.json").read_text())
    del data["models"]["base"]
    data["models"]["tuned"]["eval_loss"] = None
    (run / "eval" / "eval.json").write_text(json.dumps(data))
    style = section(build_report([run]).read_text(), "style")
    assert "base" not in style and '<td class="num">—</td>' in style
    assert '<td class="num">47.9</td>' in style


def test_cli_writes_the_report_and_prints_its_path(multirun, tmp_path, capsys):
    runs = sorted(multirun.glob("*_data=*"))
    out = tmp_path / "cmp.html"
    assert cli.main(["compare", *map(str, runs), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "data=shape_mix" in out.read_text()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "not a folder"),
    (lambda p: p, "no run.json here or below"),
])
def test_bad_path_exits_2_with_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert cli.main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and err.count("\n") == 1


def test_corrupt_history_names_the_file(tmp_path):
    run = make_run(tmp_path / "r", tmp_path / "cache", "sentence")
    (run / "train" / "history.json").write_text("{not json")
    with pytest.raises(UserError, match=r"history\.json: not valid JSON"):
        build_report([run])


@pytest.mark.slow
def test_report_in_a_real_browser(report, multirun, tmp_path):
    from browser import chrome

    with chrome(tmp_path / "profile", height=900) as driver:
        driver.get((multirun / "compare.html").as_uri())
        assert driver.title == "voicetune compare: data=sentence vs data=shape_mix"
        widths = driver.execute_script(
            "return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) == 4 and all(w > 0 for w in widths)
        rows = driver.execute_script(
            "return document.querySelectorAll('#probes tr.probe-row').length")
        assert rows == len(PROBES)
        # The whole page in one screenshot, to look at.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, height + 100)
        driver.save_screenshot(str(tmp_path / "compare.png"))
        print(f"screenshot: {tmp_path / 'compare.png'}")
