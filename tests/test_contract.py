"""The stage contract: each stage sees only the config it declares, and its key is what it sees."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError

from conftest import ROOT
from voicetune.config import Shape, Stage
from voicetune.contract import view
from voicetune.pipeline import UndeclaredRead, plan_keys, run
from voicetune.stages import STAGES

DEMO = ROOT / "src/voicetune/demo_corpus"


def test_registry_is_the_one_list_of_stages_in_pipeline_order(cfg_factory):
    assert list(STAGES) == [s.value for s in Stage]
    cfg = cfg_factory()
    assert [str(s) for s in cfg.stages] == list(STAGES)  # the default runs every stage
    for position, (name, spec) in enumerate(STAGES.items()):
        assert spec.function.startswith(f"voicetune.stages.{name}:") or \
            spec.function.startswith(f"voicetune.stages.{name}.")
        assert all(list(STAGES).index(need) < position for need in spec.needs)
        for key in spec.reads + spec.deliver_reads:  # every declared key exists in the composed config
            assert OmegaConf.select(cfg, key, default="absent") != "absent", (name, key)


def test_a_view_holds_only_the_declared_keys_and_refuses_the_rest(cfg_factory):
    seen = view(cfg_factory(), ("data.seed", "model", "export.name"))
    assert set(seen) == {"data", "model", "export"} and set(seen.data) == {"seed"}
    assert seen.export.name == "demo-smollm2_135m"  # interpolations resolved
    with pytest.raises(ConfigAttributeError):
        seen.data.valid_fraction
    with pytest.raises(ConfigAttributeError):
        seen.train
    with pytest.raises(Exception):
        seen.data.seed = 3  # read-only


def test_choices_are_enums_refused_at_composition_with_the_allowed_values():
    from conftest import CONF
    from voicetune.errors import UserError
    from voicetune.preflight import compose_checked

    cases = {"tracking.mode=offlin": "tracking.mode: Invalid value 'offlin', expected one of [offline, online, disabled]",
             "train.scheduler=cosin": "train.scheduler: Invalid value 'cosin', expected one of [linear, cosine,",
             "stages=[extract,trian]": "stages[1]: Invalid value 'trian', expected one of [extract, units,",
             "+data.shapes.essay=1": "data.shapes.essay: Key 'essay' is incompatible with the enum type 'Shape'",
             "export.mlx.dtype=f16": "export.mlx.dtype: Invalid value 'f16', expected one of [auto, float16,",
             "compute.target=aws": "compute.target: Invalid value 'aws', expected one of [local, modal]"}
    for override, message in cases.items():
        with pytest.raises(UserError) as err:
            compose_checked(CONF, [override])
        assert str(err.value).startswith(message), (override, str(err.value))
        assert "\n" not in str(err.value)
    assert [s.value for s in Shape] == ["sentence", "paragraph", "section", "abstract"]


def test_a_stage_reading_an_undeclared_key_fails_the_run(cfg_factory, tmp_path, monkeypatch):
    def sneaky(ctx):
        return {"epochs": ctx.cfg.train.epochs}  # split does not declare train.*

    import voicetune.stages.split as split_module

    monkeypatch.setattr(split_module, "run", sneaky)
    with pytest.raises(UndeclaredRead, match=r"stage split read train"):
        run(cfg_factory(["stages=[split]"]), tmp_path / "run")


def keys(cfg_factory, *overrides):
    return plan_keys(cfg_factory(list(overrides)))


def test_evaluation_settings_never_change_what_is_trained(cfg_factory):
    base = keys(cfg_factory)
    more = keys(cfg_factory, "eval.samples_per_shape=20")
    assert more["train"] == base["train"] and more["probes"] == base["probes"]
    assert more["heldout"] != base["heldout"] and more["eval"] != base["eval"]
    panel = keys(cfg_factory, "eval.panel_size=6")  # the probe panel is training's: it retrains
    assert panel["train"] != base["train"] and panel["heldout"] == base["heldout"]


def test_a_sweep_over_training_keys_reuses_the_data_stages(cfg_factory):
    base, other = keys(cfg_factory), keys(cfg_factory, "train.epochs=3", "lora.r=8")
    same = ("extract", "units", "pairs", "split", "dataset", "probes", "heldout")
    assert {n: other[n] for n in same} == {n: base[n] for n in same}
    assert other["train"] != base["train"] and other["eval"] != base["eval"] and other["export"] != base["export"]
    # Held-out papers and drafts do not depend on the shape mix: the shape ablation compares like with like.
    sentence = keys(cfg_factory, "data=sentence")
    assert (sentence["split"], sentence["heldout"], sentence["probes"]) == (base["split"], base["heldout"], base["probes"])
    assert sentence["units"] != base["units"]


def test_where_lm_studio_lives_is_the_deliverys_not_the_exports(cfg_factory, tmp_path):
    other = keys(cfg_factory, f"export.lmstudio.models_dir={tmp_path}")
    assert other["export"] == keys(cfg_factory)["export"]


def test_moving_the_papers_changes_no_key_but_editing_one_does(cfg_factory, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(DEMO, a)
    shutil.copytree(DEMO, b)
    ka = keys(cfg_factory, "corpus=dir", f"corpus.path={a}")
    assert keys(cfg_factory, "corpus=dir", f"corpus.path={b}") == ka
    (b / "joss_slix.docx").unlink()
    assert keys(cfg_factory, "corpus=dir", f"corpus.path={b}")["extract"] != ka["extract"]


def test_machine_choices_are_resolved_up_front_recorded_and_keyed(cfg_factory, tmp_path):
    auto = keys(cfg_factory, "train.backend=auto")
    assert auto == keys(cfg_factory, "train.backend=hf")  # auto on this CPU machine is hf
    assert keys(cfg_factory, "train.precision=bf16")["train"] != auto["train"]
    manifest = run(cfg_factory(["stages=[split]", "train.backend=auto"]), tmp_path / "run")
    assert manifest["resolved"] == {}  # split sees none of the choices
    from voicetune.pipeline import resolve_choices

    cfg, chosen = resolve_choices(cfg_factory(["train.backend=auto"]), ["train", "export"])
    assert chosen == {"train.backend": "hf", "train.precision": "fp32", "export.mlx.dtype": "float32",
                      "export.mlx.q_bits": 8, "export.lmstudio.source": "gguf"}
    assert cfg.train.backend == "hf" and cfg.export.mlx.dtype == "float32"


def test_run_json_records_placement_and_what_each_stage_reads(cfg_factory, tmp_path):
    manifest = run(cfg_factory(["stages=[split]"]), tmp_path / "run")
    on_disk = json.loads((tmp_path / "run/run.json").read_text())
    assert on_disk["stages"][0]["key"] == manifest["stages"][0]["key"]  # keys are not mistaken for secrets
    records = {s["name"]: s for s in on_disk["stages"]}
    assert records["split"]["placement"] == "local"
    assert records["split"]["reads"] == list(STAGES["split"].reads)
    assert dataclasses.is_dataclass(STAGES["split"]) and STAGES["split"].needs == ("extract",)
