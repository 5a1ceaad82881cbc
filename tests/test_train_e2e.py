"""End to end on the embedded model: corpus -> dataset -> adapter -> eval, W&B read back, resume.

The run (through export) is the session fixture `e2e_run` in conftest; test_export_e2e checks its artifacts."""

import json

import pytest

from conftest import E2E, killed_and_rerun, make_cfg
from voicetune.pipeline import run
from voicetune.stages.train.callbacks import GENERATION_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(e2e_cache):
    return e2e_cache


@pytest.fixture(scope="module")
def finished(e2e_run):
    return e2e_run


def test_every_stage_ran(finished):
    run_dir, manifest = finished
    assert [s["name"] for s in manifest["stages"]] == ["extract", "units", "pairs", "split", "dataset", "probes",
                                                       "heldout", "train", "eval", "export"]
    assert all(s["status"] == "miss" for s in manifest["stages"])
    assert manifest["resolved"]["train.backend"] == "hf" and manifest["resolved"]["train.precision"] == "fp32"
    assert manifest["report"] == str(run_dir / "report.html") and (run_dir / "report.html").exists()


def test_held_out_drafts_and_probes_come_from_the_valid_papers_only(finished):
    from voicetune.records import read_jsonl, read_split

    run_dir, _ = finished
    split = read_split(run_dir / "split")
    papers = {name: {r["paper"] for r in read_jsonl(run_dir / path)} for name, path in
              [("train", "dataset/train.jsonl"), ("valid", "dataset/valid.jsonl"),
               ("heldout", "heldout/heldout.jsonl"), ("probes", "probes/probes.jsonl")]}
    assert papers["valid"] == split["valid"] and papers["train"] <= split["train"]
    assert papers["heldout"] <= split["valid"] and papers["probes"] <= split["valid"]
    assert not (papers["heldout"] | papers["probes"]) & papers["train"]


def test_history_has_losses_and_probe_generations(finished):
    run_dir, _ = finished
    history = json.loads((run_dir / "train/history.json").read_text())
    assert [r["step"] for r in history["train"]] == [1, 2]
    assert history["eval"][-1]["step"] == 2 and history["eval"][-1]["eval_loss"] > 0
    probes = history["generations"]
    assert {p["shape"] for p in probes} >= {"paragraph", "section", "abstract"}
    assert all(set(GENERATION_COLUMNS) <= set(p) for p in probes)
    summary = history["summary"]
    assert summary["steps"] == 2 and summary["padding_efficiency"] >= 0.95
    adapter = run_dir / "train/adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "persona.txt", "voicetune.yaml",
            "tokenizer.json"} <= {p.name for p in adapter.iterdir()}


def test_eval_compares_tuned_and_base_on_every_shape(finished):
    run_dir, manifest = finished
    report = json.loads((run_dir / "eval/eval.json").read_text())
    assert set(report["models"]) == {"tuned", "base"}
    for model in report["models"].values():
        assert set(model["per_shape"]) == {"paragraph", "section", "abstract", "sentence"}
        assert model["eval_loss"] > 0 and model["heldout_loss"] > 0 and 0 <= model["chrf"] <= 100
        assert {"early_stop_rate", "runaway_rate", "length_ratio_median"} <= set(model["overall"])
    assert report["author"]["words"] > 1000
    assert all(set(s["outputs"]) == {"tuned", "base"} for s in report["samples"])
    eval_record = next(s for s in manifest["stages"] if s["name"] == "eval")
    assert eval_record["metrics"]["tuned/eval_loss"] == report["models"]["tuned"]["eval_loss"]
    assert eval_record["metrics"]["tuned/early_stop_rate_lo"] == report["models"]["tuned"]["overall"]["ci"]["early_stop_rate"][0]


def interval(est, n=None):
    """A {"value", "ci", "n"} estimate whose interval holds its value."""
    lo, hi = est["ci"]
    assert lo <= est["value"] <= hi and (n is None or est["n"] == n), est
    return est["value"]


def test_eval_measures_voice_with_intervals(finished):
    run_dir, manifest = finished
    report = json.loads((run_dir / "eval/eval.json").read_text())
    n = len(report["samples"])
    for model in report["models"].values():
        for key in ("length_ratio_median", "early_stop_rate", "runaway_rate", "shape_match_rate"):
            lo, hi = model["overall"]["ci"][key]
            assert lo <= model["overall"][key] <= hi
        assert set(model["style"]["ci"]) == {"hedging_per_1k", "cliches_per_1k", "contractions_per_1k",
                                             "mean_sentence_words"}
        assert model["ci"]["chrf"][0] <= model["chrf"] <= model["ci"]["chrf"][1]
    voice = report["voice"]
    card = voice["classifier"]
    # Offline drafts are easy to tell from the author: the classifier passes its held-out check.
    assert card["usable"] and card["auc"] >= card["min_auc"] and card["trained_on"]["author"] > 50
    texts = voice["texts"]
    assert set(texts) == {"rough", "base", "tuned", "reference"}
    assert interval(texts["reference"]["likeness"]["overall"], n) > interval(texts["rough"]["likeness"]["overall"], n)
    for name in ("base", "tuned", "reference"):
        interval(texts[name]["meaning"]["all_kept_rate"])
        interval(texts[name]["meaning"]["markers_kept_share"])
        interval(texts[name]["memorization"]["copied_8gram_share"], n)
        assert texts[name]["memorization"]["longest_copied_span"]["max"] >= 0
    # The held-out reference was never trained on: it copies (almost) no 8-gram of the training papers.
    assert texts["reference"]["memorization"]["copied_8gram_share"]["value"] < 0.02
    assert texts["reference"]["meaning"]["markers_kept_share"]["value"] > 0.9  # drafts keep the numbers
    for name in ("base", "tuned"):
        assert "moved_toward_reference_median" in texts[name]
    paired = voice["paired"]["tuned_minus_base"]
    for key in ("length_ratio_median", "likeness_mean", "cliches_per_1k", "hedging_per_1k", "all_kept_rate",
                "markers_kept_share", "chrf"):
        assert paired[key]["n"] > 0 and len(paired[key]["ci"]) == 2, key
    sample = report["samples"][0]
    assert set(sample["likeness"]) == {"rough", "reference"}
    assert {"likeness", "moved_toward_reference", "markers", "markers_kept", "longest_copied_span"} <= set(
        sample["outputs"]["tuned"])
    metrics = next(s for s in manifest["stages"] if s["name"] == "eval")["metrics"]
    assert metrics["voice/tuned_minus_base/likeness_mean_lo"] == paired["likeness_mean"]["ci"][0]


def test_wandb_offline_run_holds_what_was_logged(finished):
    from voicetune.wandb_read import read_run

    run_dir, _ = finished
    logged = read_run(run_dir)
    assert logged["config"]["data"]["name"] == "shape_mix" and logged["group"] == "default"
    keys = set().union(*(row.keys() for row in logged["history"]))
    assert {"train/loss", "eval/loss", "train/padding_efficiency"} <= keys
    table = logged["tables"]["eval/generations"]
    assert table["columns"] == GENERATION_COLUMNS and len(table["data"]) >= 3
    assert "eval/tuned/early_stop_rate" in json.dumps(logged["summary"]) or \
        "early_stop_rate" in json.dumps(logged["summary"]["eval"])
    assert logged["tables"]["eval/samples"]["data"]
    assert "likeness_mean_hi" in json.dumps(logged["summary"])


def test_cached_rerun_trains_nothing(finished, cache, tmp_path):
    manifest = run(make_cfg(E2E + ["stages=[eval]"], cache), tmp_path / "again")
    assert {s["status"] for s in manifest["stages"]} == {"hit"}


def test_compare_report_for_the_run(finished, tmp_path):
    from voicetune.compare import build_report

    run_dir, _ = finished
    html = build_report([run_dir], tmp_path / "report.html").read_text()
    assert "probe" in html.lower() and "data:image/png;base64" in html


def test_killed_training_resumes_from_its_checkpoint(cache, tmp_path):
    args = ["train.max_steps=4", "train.save_steps=2", "train.eval_steps=4", "eval.loss_records=4",
            "eval.samples_per_shape=1", "tracking=disabled", "stages=[train]"]
    history = killed_and_rerun(args, cache, tmp_path, checkpoint=2)
    assert history["summary"]["resumed_from"] == "checkpoint-2"
    assert history["summary"]["steps"] == 4
    assert [r["step"] for r in history["train"]] == [1, 2, 3, 4]
