"""`compute=modal` with Modal's cloud replaced by the container body run in this process.

Everything up to that boundary is the real code: the pipeline places train, eval and export
remotely, builds each payload, the container body (`modal.execute`) runs the real stage on a
folder standing in for the runs volume, and `copy_back` brings the outputs back file by file.
The test shows the local side never instantiates a model (every model is built inside a remote
call) and that what comes back is what the user runs: the adapter, eval.json and the asked-for
artifact, not the merged folder it was converted from.
"""

from __future__ import annotations

import json

import pytest

from conftest import make_cfg
from test_modal import FolderVolume

# Three short papers, 1 training step, one probe: every generation is short.
CHEAP = ["data.valid_fraction=0.34", "train.max_steps=1", "train.eval_steps=50",
         "train.save_steps=50",
         "eval.samples_per_shape=1", "eval.loss_records=2", "eval.panel_size=1",
         "eval.panel.paragraph=1", "eval.panel.section=0", "eval.panel.abstract=0", "export.parity_probes=1"]


@pytest.mark.slow
def test_remote_stages_build_every_model_and_bring_back_what_the_user_runs(e2e_cache, tmp_path, monkeypatch):
    from transformers import PreTrainedModel

    from docx_factory import short_papers

    from voicetune.compute import modal as remote
    from voicetune.pipeline import run

    corpus = short_papers(tmp_path / "corpus")
    volume = tmp_path / "volume"
    where = {"remote": False}
    built = {"local": [], "remote": []}
    original_init = PreTrainedModel.__init__

    def spy(self, *args, **kwargs):
        built["remote" if where["remote"] else "local"].append(type(self).__name__)
        original_init(self, *args, **kwargs)

    def in_process(compute, body, tools):
        where["remote"] = True
        try:
            return remote.execute(body, volume), remote.remote_record("ap-1", "fc-1", compute.gpu, 60)
        finally:
            where["remote"] = False

    monkeypatch.setattr(PreTrainedModel, "__init__", spy)
    monkeypatch.setattr(remote, "has_token", lambda: True)
    monkeypatch.setattr(remote, "launch", in_process)
    monkeypatch.setattr(remote, "runs_volume", lambda compute: FolderVolume(volume))
    cfg = make_cfg(CHEAP + ["corpus=dir", f"corpus.path={corpus}", "compute=modal", "tracking=disabled",
                            "train.backend=hf", "train.precision=fp32",
                            "export=[gguf]"], e2e_cache)
    manifest = run(cfg, tmp_path / "run")
    placed = {s["name"]: s["placement"] for s in manifest["stages"]}
    assert {placed[n] for n in ("train", "eval", "export")} == {"modal"}
    assert placed["dataset"] == "local"
    assert built["remote"] and not built["local"], built  # the laptop never built a model
    out = tmp_path / "run"
    assert (out / "train/adapter/adapter_config.json").is_file()
    assert json.loads((out / "eval/eval.json").read_text())["models"].keys() == {"tuned", "base"}
    exported = {p.name for p in (out / "export").iterdir() if p.is_dir()}
    assert "gguf" in exported and "merged" not in exported  # 16 GB for an 8B: only when asked
    assert all(s["metrics"]["remote"]["gpu"] for s in manifest["stages"] if s["placement"] == "modal")
