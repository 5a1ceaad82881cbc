"""compute.dry_run: the plan of the remote stages, printed without a token, an upload or a model."""

from __future__ import annotations

import pytest

from voicetune.compute import plan as dry
from voicetune.pipeline import run


def test_dry_run_plans_every_remote_stage_without_a_token_or_an_upload(cfg_factory, tmp_path, monkeypatch):
    from voicetune.compute import modal as remote

    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.modal.toml
    def refuse(*args, **kwargs):
        raise AssertionError("a dry run reached Modal")
    monkeypatch.setattr(remote, "launch", refuse)
    monkeypatch.setattr(remote, "require_token", refuse)
    cfg = cfg_factory(["compute=modal", "compute.dry_run=true", "compute.gpu=H100", "data.max_units=30",
                       "model.params_b=8.03", "export=[gguf,mlx_q4]"])
    manifest = run(cfg, tmp_path / "run")
    text = manifest["dry_run"]
    assert "train, eval, export would run on Modal (H100); nothing was uploaded" in text
    lines = {line.split(":")[0].strip(): line for line in text.splitlines()}
    for stage in ("train", "eval", "export"):
        assert "min" in lines[stage] and "$" in lines[stage] and "upload" in lines[stage]
    assert "6,494 tok/s (measured (DESIGN, packed))" in lines["train"]  # 8B on an H100: the table's row
    assert "download 9.4 GB" in lines["export"]  # 8.03B x (0.61 + 0.56) bytes: GGUF Q4_K_M + MLX 4-bit
    assert "total: ~" in text
    ran = [s["name"] for s in manifest["stages"]]
    assert "train" not in ran and {"dataset", "probes", "heldout"} <= set(ran)


def test_training_minutes_follow_tokens_and_the_gpus_throughput():
    assert dry.train_tokens_per_s("H100", 8.03) == 6494
    assert dry.train_tokens_per_s("A100-40GB", 8.03) == 2131
    # a 0.135B model is not 60x faster: capped at 10x
    assert dry.train_tokens_per_s("H100", 0.135) == pytest.approx(64940)
    assert dry.train_tokens_per_s("H100", None) is None


def test_every_gpu_has_a_throughput_row():
    from voicetune.compute.modal import GPU_PRICE_PER_HOUR

    assert set(dry.THROUGHPUT) == set(GPU_PRICE_PER_HOUR)
