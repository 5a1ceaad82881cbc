"""Stage runner: cache keys from inputs + config keys read, manifest, upstream planning."""

import json
import shutil

import pytest

from conftest import ROOT, run_cli
from voicetune.pipeline import plan, run

DEMO = ROOT / "src/voicetune/demo_corpus"


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    for name in ("joss_slix.docx", "manubot_pagerank_indices.docx"):
        shutil.copy(DEMO / name, folder / name)
    return folder


def statuses(manifest):
    return {s["name"]: s["status"] for s in manifest["stages"]}


def test_plan_adds_upstream_in_order():
    assert plan(["dataset"]) == ["extract", "units", "pairs", "split", "dataset"]
    assert plan(["train"]) == ["extract", "units", "pairs", "split", "dataset", "probes", "train"]
    assert plan(["extract"]) == ["extract"]


def test_second_run_hits_the_cache_and_manifest_records_it(cfg_factory, corpus, tmp_path):
    cfg = cfg_factory(["corpus=dir", f"corpus.path={corpus}", "stages=[extract]"])
    first = run(cfg, tmp_path / "run1")
    second = run(cfg, tmp_path / "run2")
    assert statuses(first) == {"extract": "miss"} and statuses(second) == {"extract": "hit"}
    manifest = json.loads((tmp_path / "run2/run.json").read_text())
    (stage,) = manifest["stages"]
    assert stage["key"] == first["stages"][0]["key"] and stage["metrics"]["papers"] == 2
    assert {"python", "hydra-core", "lxml"} <= set(manifest["versions"])
    assert (tmp_path / "run2/extract/papers.jsonl").exists()  # link into the cache
    assert "corpus:" in (tmp_path / "run2/config.yaml").read_text()


def test_key_depends_only_on_what_the_stage_reads(cfg_factory, corpus, tmp_path):
    base = ["corpus=dir", f"corpus.path={corpus}", "stages=[extract]"]
    key = lambda extra: run(cfg_factory(base + extra), tmp_path / "r")["stages"][0]["key"]  # noqa: E731
    k0 = key([])
    assert key(["data.seed=7", "train.epochs=3", "lora.r=4"]) == k0  # extract does not read these
    assert key(["corpus.max_heading_chars=60"]) != k0
    shutil.copy(DEMO / "joss_slix.docx", corpus / "copy.docx")
    assert key([]) != k0  # the corpus changed


def test_later_stage_runs_missing_upstream(cfg_factory, corpus, tmp_path):
    cfg = cfg_factory(["corpus=dir", f"corpus.path={corpus}", "stages=[units]"])
    manifest = run(cfg, tmp_path / "run")
    assert statuses(manifest) == {"extract": "miss", "units": "miss"}
    units = (tmp_path / "run/units/units.jsonl").read_text().splitlines()
    assert len(units) == manifest["stages"][1]["metrics"]["units"] > 0


@pytest.mark.slow
def test_cli_runs_and_multirun_reuses_the_cache(tmp_path):
    env = {"VOICETUNE_CACHE": str(tmp_path / "cache")}
    single = run_cli(["data=shape_mix", "lora.r=16", "stages=[extract]"], cwd=tmp_path, env=env)
    assert single.returncode == 0, single.stderr
    multi = run_cli(["-m", "data=sentence,shape_mix", "stages=[extract]"], cwd=tmp_path, env=env)
    assert multi.returncode == 0, multi.stderr
    manifests = sorted((tmp_path / "multirun").rglob("run.json"))
    assert len(manifests) == 2
    assert all(statuses(json.loads(m.read_text())) == {"extract": "hit"} for m in manifests)
