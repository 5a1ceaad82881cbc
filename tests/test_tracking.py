"""Tracking: real offline W&B runs written under tmp_path and read back from the .wandb file."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from conftest import CONF
from voicetune import tracking
from voicetune.errors import UserError
from voicetune.wandb_read import read_run

GENERATION_COLUMNS = ["probe_id", "shape", "prompt", "output", "reference", "output_words",
                      "reference_words", "length_ratio", "ended"]
GENERATIONS = [
    ["p0", "sentence", "rough one", "Polished one.", "Reference one.", 2, 2, 1.0, True],
    ["p1", "abstract", "rough two", "Polished two, cut", "Reference two is long.", 3, 4, 0.75, False],
]


def tiny_png(path):
    """A 2x2 PNG written with matplotlib (already a project dependency)."""
    import matplotlib.image

    matplotlib.image.imsave(path, [[0.0, 1.0], [1.0, 0.0]])
    return path


@pytest.fixture
def no_wandb(monkeypatch):
    """Make `import wandb` fail, proving a code path never touches it."""
    monkeypatch.setitem(sys.modules, "wandb", None)


def test_offline_run_reads_back(cfg_factory, tmp_path):
    cfg = cfg_factory(["data=sentence", "lora.r=8", "experiment=shape_test"])
    tracker = tracking.start(cfg, tmp_path / "run")
    import wandb

    assert wandb.run is tracker.run  # what the HF Trainer's WandbCallback reuses
    for step, loss in enumerate([2.5, 2.0, 1.5]):
        tracker.log({"train/loss": loss}, step=step)
    tracker.log({"eval/loss": 1.25}, step=2)
    tracker.table("eval/generations", GENERATION_COLUMNS, GENERATIONS, step=3)
    tracker.image("plots/loss", tiny_png(tmp_path / "loss.png"), step=3)
    (tmp_path / "dataset_card.md").write_text("# dataset card\n")
    tracker.save_file(tmp_path / "dataset_card.md")
    tracker.summary({"eval/loss": 1.25, "eval/early_stop_rate": 0.5})
    tracker.finish()
    tracker.finish()  # idempotent, e.g. after the trainer's callback

    assert tracker.run is None
    run = read_run(tmp_path / "run")
    media = ("eval/generations", "plots/loss")
    assert [{k: v for k, v in row.items() if k not in media} for row in run["history"]] == [
        {"_step": 0, "train/loss": 2.5},
        {"_step": 1, "train/loss": 2.0},
        {"_step": 2, "train/loss": 1.5, "eval/loss": 1.25},
        {"_step": 3},
    ]
    table = {"columns": GENERATION_COLUMNS, "data": GENERATIONS}
    assert run["history"][3]["eval/generations"] == table
    assert run["tables"] == {"eval/generations": table}
    files = next((tmp_path / "run" / "wandb").glob("offline-run-*/files"))
    assert run["history"][3]["plots/loss"]["_type"] == "image-file"
    assert (files / run["history"][3]["plots/loss"]["path"]).is_file()
    assert (files / "dataset_card.md").read_text() == "# dataset card\n"
    assert run["summary"]["eval/early_stop_rate"] == 0.5
    assert run["summary"]["eval/loss"] == 1.25
    assert run["group"] == "shape_test"
    assert run["project"] == "voicetune"
    assert run["name"] == "shape_test:data=sentence,lora.r=8,train=cpu_tiny"
    assert {"data=sentence", "model=smollm2_135m", "train=cpu_tiny"} <= set(run["tags"])
    assert run["config"]["data"]["name"] == "sentence"
    assert run["config"]["lora"]["r"] == 8
    assert run["config"]["experiment"] == "shape_test"
    assert len(list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))) == 1


def test_secrets_never_reach_run_files(cfg_factory, tmp_path, monkeypatch):
    env_secret = "sk-test-" + "e" * 40
    fake_key = "sk-proj-" + "f" * 40
    bare_token = "ghp_" + "g" * 36
    monkeypatch.setenv("OPENAI_API_KEY", env_secret)
    cfg = cfg_factory()
    cfg.generator.api_key_env = fake_key
    cfg.generator.base_url = f"https://api.example.com/v1?key={env_secret}"
    cfg.model.chat_template = bare_token
    cfg.tracking.tags = [f"note {env_secret}"]

    tracker = tracking.start(cfg, tmp_path / "run")
    tracker.log({"train/loss": 1.0}, step=0)
    tracker.finish()

    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (env_secret, fake_key, bare_token):
            assert secret.encode() not in data, f"{secret[:6]}... leaked into {path.name}"
    config = read_run(tmp_path / "run")["config"]
    assert "api_key_env" not in config["generator"]
    assert config["generator"]["base_url"] == "https://api.example.com/v1?key=<redacted>"
    assert config["model"]["chat_template"] == "<redacted>"


def test_safe_config_keeps_ordinary_values(cfg_factory, monkeypatch):
    monkeypatch.setenv("HOME_TOKEN", "x")  # too short to redact anything meaningfully
    cfg = cfg_factory(["generator=openai", "generator.api_key_env=OPENAI_API_KEY"])
    safe = tracking.safe_config(cfg)
    assert "api_key_env" not in safe["generator"]
    assert safe["data"]["prompt"] == cfg.data.prompt
    assert safe["corpus"]["path"] == cfg.corpus.path


def test_tags_and_group_from_config(cfg_factory):
    cfg = cfg_factory(["tracking.tags=[ablation]", "tracking.group=g1", "train=smoke"])
    assert tracking.run_tags(cfg) == ["ablation", f"data={cfg.data.name}",
                                      "model=smollm2_135m", "train=smoke"]


def test_name_shows_hydra_overrides(cfg_factory):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        full = compose("config", overrides=["data=sentence", "lora.r=8", "experiment=x"],
                       return_hydra_config=True)
    HydraConfig.instance().set_config(full)
    try:
        assert tracking.run_name(cfg_factory()) == "data=sentence,lora.r=8"
    finally:
        HydraConfig.instance().cfg = None


def test_disabled_writes_nothing_and_never_imports_wandb(cfg_factory, tmp_path, no_wandb):
    tracker = tracking.start(cfg_factory(["tracking=disabled"]), tmp_path / "run")
    tracker.log({"train/loss": 1.0}, step=0)
    tracker.table("eval/generations", GENERATION_COLUMNS, GENERATIONS)
    tracker.summary({"eval/loss": 1.0})
    tracker.image("plot", tmp_path / "missing.png")
    tracker.save_file(tmp_path / "missing.md")
    tracker.finish()
    assert tracker.run is None
    assert not (tmp_path / "run").exists()


def test_online_without_key_is_one_line_user_error(cfg_factory, tmp_path, monkeypatch, no_wandb):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    with pytest.raises(UserError) as err:
        tracking.start(cfg_factory(["tracking=wandb"]), tmp_path / "run")
    assert str(err.value) == "tracking=wandb: set WANDB_API_KEY (or use tracking=wandb_offline)"
    assert not (tmp_path / "run").exists()


def test_read_run_without_a_run_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no W&B run here"):
        read_run(tmp_path)
