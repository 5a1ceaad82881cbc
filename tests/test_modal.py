"""compute=modal without a network: app definition, payload, secrets, container body, copy-back, no-token path.

Modal's cloud cannot exist here and a fake token hangs ~60 s, so no test sets one: the
container body runs in-process on a temp folder standing in for the runs volume.
"""

import json
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from voicetune.compute import modal as remote
from voicetune.config import ModalGpu, validate
from voicetune.pipeline import resolve_choices
from voicetune.stages import STAGES
from voicetune.errors import UserError

WANDB_VALUE = "wandb-test-value-0123456789abcdef0123456789"


@pytest.fixture
def modal_cfg(cfg_factory):
    return cfg_factory(["compute=modal", "compute.gpu=H100", "compute.timeout=1800", "compute.retries=3",
                        "compute.secrets=[wandb,huggingface]", "tracking=disabled", "train.backend=auto"])


@pytest.fixture
def inputs(tmp_path):
    """A dataset and a probes folder as the cache holds them, with a nested file and the marker."""
    dataset, probes = tmp_path / "stages/dataset", tmp_path / "stages/probes"
    (dataset / "hf/train").mkdir(parents=True)
    probes.mkdir(parents=True)
    (dataset / "train.jsonl").write_text('{"messages": []}\n')
    (dataset / "valid.jsonl").write_text('{"messages": [1]}\n')
    (dataset / "hf/train/data.arrow").write_bytes(b"\x00\x01arrow")
    (dataset / ".complete").write_text("key")
    (probes / "probes.jsonl").write_text('{"probe": 1}\n')
    return {"dataset": dataset, "probes": probes}


def train_ctx(cfg, inputs, out, tracker=None):
    """The train stage's context as the pipeline builds it: its view, its inputs, services."""
    from voicetune.cache import Cache
    from voicetune.contract import Context, Services, view

    cfg, _ = resolve_choices(cfg, ["train"])
    return Context(view(cfg, STAGES["train"].reads), inputs, out, Services(Cache(cfg.cache_dir)), tracker)


def payload(cfg, inputs, out=None, tracker=None):
    from voicetune.tracking import remote_settings

    ctx = train_ctx(cfg, inputs, out or Path("unused"), tracker)
    return remote.build_payload(STAGES["train"], ctx, cfg.compute, remote_settings(cfg))


@dataclass
class Entry:
    path: str
    type: int


class FolderVolume:
    """A local folder with the two calls copy_back uses from modal.Volume (listdir, read_file)."""

    def __init__(self, root: Path):
        self.root = root

    def listdir(self, path: str, recursive: bool = False):
        from modal.types import FileEntryType

        found = sorted((self.root / path).rglob("*"))
        return [Entry(p.relative_to(self.root).as_posix(),
                      FileEntryType.FILE if p.is_file() else FileEntryType.DIRECTORY) for p in found]

    def read_file(self, path: str):
        data = (self.root / path).read_bytes()
        yield from (data[i:i + 4] for i in range(0, len(data), 4))  # several chunks, like Modal's


def fake_train(ctx):
    """Stands in for the train stage: checks what the container gives it, writes a nested output tree."""
    inputs, out = ctx.inputs, ctx.out
    assert ctx.cfg.model.name == "smollm2_135m" and ctx.cfg.train.backend == "unsloth"  # resolved for the GPU
    assert "compute" not in ctx.cfg  # the stage sees its view, not where it runs
    assert (inputs["dataset"] / "hf/train/data.arrow").read_bytes() == b"\x00\x01arrow"
    assert (inputs["probes"] / "probes.jsonl").is_file()
    (out / "adapter/tokenizer").mkdir(parents=True)
    (out / "adapter/adapter_model.safetensors").write_bytes(b"weights" * 10)
    (out / "adapter/tokenizer/tokenizer.json").write_text("{}")
    (out / "checkpoints/checkpoint-2").mkdir(parents=True, exist_ok=True)
    history = {"train": [{"step": 1, "loss": 2.0, "learning_rate": 1e-4}],
               "eval": [{"step": 2, "eval_loss": 1.5}],
               "generations": [{"step": 2, **{c: c for c in ("probe_id", "shape", "prompt", "output", "reference")},
                                "output_words": 3, "reference_words": 3, "length_ratio": 1.0, "ended": True}],
               "summary": {"steps": 2, "final_eval_loss": 1.5}}
    (out / "history.json").write_text(json.dumps(history))
    return history["summary"]


class Recorder:
    """A tracker that remembers what it was given."""

    def __init__(self):
        self.logs, self.tables, self.summaries = [], [], {}

    def log(self, metrics, step=None):
        self.logs.append(metrics)

    def table(self, key, columns, rows, step=None):
        self.tables.append((key, rows))

    def summary(self, metrics):
        self.summaries.update(metrics)


def test_module_imports_fast_without_modal():
    code = ("import sys, time; t = time.perf_counter(); import voicetune.compute.modal; "
            "print(time.perf_counter() - t, 'modal' in sys.modules)")
    seconds, loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                     check=True).stdout.split()
    assert float(seconds) < 1.0 and loaded == "False"


def test_app_definition_follows_compute_config(modal_cfg, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf-test-value-0123456789abcdef0123456789")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    opts = remote.function_options(modal_cfg.compute)
    assert (opts["gpu"], opts["timeout"], opts["retries"], opts["memory"]) == ("H100", 1800, 3, 32768)
    assert {k: repr(v) for k, v in opts["volumes"].items()} == {
        "/cache/huggingface": "modal.Volume.from_name('voicetune-hf-cache')",
        "/runs": "modal.Volume.from_name('voicetune-runs')"}
    names = [repr(s) for s in opts["secrets"]]
    assert names == ["modal.Secret.from_name('wandb')", "modal.Secret.from_name('huggingface')",
                     "Secret.from_dict([HF_TOKEN])"]  # names only: the value is not in the repr
    _, fn = remote.build_app(modal_cfg.compute)
    assert fn._spec_.gpus == "H100" and set(fn._spec_.volumes) == {"/cache/huggingface", "/runs"}
    # The container finds the body by module and name: it must be a module-level function.
    raw = fn._raw_f_
    assert (raw.__module__, raw.__qualname__) == ("voicetune.compute.modal", "container_main")


def test_image_installs_exactly_the_cuda_lock_first(monkeypatch):
    import modal

    from voicetune.backends.unsloth import source_project

    installed = []

    def record(self, *packages, **kwargs):
        installed.extend(packages)
        return self

    monkeypatch.setattr(modal.Image, "uv_pip_install", record)
    remote.build_image()
    lock = remote.cuda_requirements()  # pyproject's `cuda` extra, as written
    assert installed == remote.image_packages() and installed[:len(lock)] == lock
    names = [remote.requirement_name(r) for r in installed]
    # Pins win: pyproject's own `transformers>=5.2` and `torch>=2.4` give way to the lock's lines.
    assert "transformers==5.17.0" in installed and "torch==2.10.0" in installed
    assert names.count("transformers") == names.count("torch") == 1
    assert installed[len(lock):] == [r for r in source_project()["dependencies"]
                                     if remote.requirement_name(r) not in set(names[:len(lock)])]
    assert "hydra-core" in names[len(lock):]


def test_image_pins_are_the_unsloth_backends():
    unsloth = pytest.importorskip("voicetune.backends.unsloth")
    pins = unsloth.cuda_requirements()
    assert pins and remote.image_packages()[:len(pins)] == pins


def test_payload_carries_files_and_config_but_no_secret(modal_cfg, inputs, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", WANDB_VALUE)
    body = payload(modal_cfg, inputs)
    assert body["files"] == {"dataset/train.jsonl": b'{"messages": []}\n', "dataset/valid.jsonl": b'{"messages": [1]}\n',
                             "dataset/hf/train/data.arrow": b"\x00\x01arrow", "probes/probes.jsonl": b'{"probe": 1}\n'}
    # The stage's view travels, not the whole config: no compute, no generator, no tracking keys.
    assert isinstance(body["config"], str) and "backend: unsloth" in body["config"] and "compute" not in body["config"]
    assert body["function"] == "voicetune.stages.train:run" and body["tracked"] is True
    assert WANDB_VALUE.encode() not in pickle.dumps(body) and "WANDB_API_KEY" not in body["config"]
    assert body["key"].startswith("train-") and body["runs_volume"] == "voicetune-runs"
    assert payload(modal_cfg, inputs)["key"] == body["key"]  # a rerun finds its folder
    (inputs["dataset"] / "train.jsonl").write_text("changed\n")
    assert payload(modal_cfg, inputs)["key"] != body["key"]


def test_container_body_runs_the_stage_and_outputs_come_back_file_by_file(modal_cfg, inputs, tmp_path):
    volume_root, commits = tmp_path / "volume", []
    body = payload(modal_cfg, inputs)
    result = remote.execute(body, volume_root, function=fake_train, commit=lambda: commits.append(1))
    assert result == {"metrics": {"steps": 2, "final_eval_loss": 1.5}, "tracked": False} and commits == [1]
    out = tmp_path / "local_out"
    copied = remote.copy_back(FolderVolume(volume_root), f"{body['key']}/out", out)
    assert sorted(copied) == ["adapter/adapter_model.safetensors", "adapter/tokenizer/tokenizer.json", "history.json"]
    assert (out / "adapter/adapter_model.safetensors").read_bytes() == b"weights" * 10
    assert not (out / "checkpoints").exists()
    # The same call again (e.g. the local side died after success) does not train twice.
    assert remote.execute(body, volume_root, function=None) == result


def test_a_retried_call_resumes_in_the_same_volume_folder(modal_cfg, inputs, tmp_path):
    body = payload(modal_cfg, inputs)

    def preempted(ctx):
        (ctx.out / "checkpoints/checkpoint-100").mkdir(parents=True)
        raise RuntimeError("preempted")

    def resumed(ctx):
        assert (ctx.out / "checkpoints/checkpoint-100").is_dir()  # what train's last_checkpoint(out) finds
        return {"steps": 200}

    with pytest.raises(RuntimeError):
        remote.execute(body, tmp_path / "volume", function=preempted)
    assert remote.execute(body, tmp_path / "volume", function=resumed)["metrics"] == {"steps": 200}


def test_run_remote_returns_metrics_with_the_remote_record(modal_cfg, inputs, tmp_path, monkeypatch):
    volume_root = tmp_path / "volume"
    monkeypatch.setattr(remote, "has_token", lambda: True)
    monkeypatch.setattr(remote, "launch", lambda compute, body, tools: (
        remote.execute(body, volume_root, function=fake_train),
        remote.remote_record("ap-123", "fc-456", compute.gpu, 18 * 60)))
    monkeypatch.setattr(remote, "runs_volume", lambda compute: FolderVolume(volume_root))
    from voicetune.tracking import remote_settings

    tracker, out = Recorder(), tmp_path / "out"
    metrics = remote.run_remote(STAGES["train"], train_ctx(modal_cfg, inputs, out, tracker), modal_cfg.compute,
                                remote_settings(modal_cfg))
    assert metrics == {"steps": 2, "final_eval_loss": 1.5, "remote": {
        "app_id": "ap-123", "call_id": "fc-456", "gpu": "H100", "minutes": 18.0, "cost_usd_estimate": 1.19}}
    assert (out / "adapter/tokenizer/tokenizer.json").is_file()
    # An offline remote run is replayed into the local W&B run: losses, probe table, summary.
    assert tracker.logs == [{"train/loss": 2.0, "train/learning_rate": 1e-4, "train/global_step": 1},
                            {"eval/loss": 1.5, "train/global_step": 2}]
    assert [key for key, _ in tracker.tables] == ["eval/generations"]
    assert tracker.summaries["train/final_eval_loss"] == 1.5 and tracker.summaries["remote/gpu"] == "H100"


def test_no_token_fails_in_one_line_before_any_upload(modal_cfg, inputs, tmp_path, monkeypatch):
    import modal.config

    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(modal.config, "_user_config", {})  # as if ~/.modal.toml were absent

    def must_not_run(*args, **kwargs):
        raise AssertionError("uploaded without a token")

    for step in ("build_payload", "launch", "copy_back"):
        monkeypatch.setattr(remote, step, must_not_run)
    assert not remote.has_token()
    with pytest.raises(UserError) as err:
        remote.run_remote(STAGES["train"], train_ctx(modal_cfg, inputs, tmp_path / "out"), modal_cfg.compute, {})
    assert str(err.value) == remote.NO_TOKEN and "modal setup" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("gpu,minutes,usd", [("A100-40GB", 18, 0.63), ("H100", 60, 3.95), ("T4", 120, 1.18)])
def test_cost_estimate_is_minutes_times_the_hourly_price(gpu, minutes, usd):
    record = remote.remote_record("ap", "fc", gpu, minutes * 60)
    assert (record["minutes"], record["cost_usd_estimate"]) == (minutes, usd)


def test_every_accepted_gpu_has_a_price():
    assert set(remote.GPU_PRICE_PER_HOUR) == {g.value for g in ModalGpu}


@pytest.mark.parametrize("override,message", [
    ("compute.gpu=V100", "compute.gpu: Invalid value 'V100', expected one of [T4, L4, A10G, A100-40GB"),
    ("compute.stages=[units]", "compute.stages=['units']: only train, eval, export load the model"),
    ("compute.timeout=0", "compute.timeout=0: seconds, between 1 and 86400"),
    ("compute.retries=11", "compute.retries=11: between 0 and 10"),
    ("~compute.volumes.hf_cache", "compute.volumes={'runs': 'voicetune-runs'}: needs exactly hf_cache and runs"),
])
def test_compute_mistakes_are_one_line(override, message):
    from conftest import CONF
    from voicetune.preflight import compose_checked

    with pytest.raises(UserError) as err:
        compose_checked(CONF, ["compute=modal", override])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_secret_value_in_compute_secrets_is_refused_without_echo(cfg_factory):
    token = "hf_" + "a1" * 20
    with pytest.raises(UserError) as err:
        validate(cfg_factory(["compute=modal", f"compute.secrets=[{token}]"]))
    assert str(err.value).startswith("compute.secrets:") and token not in str(err.value)


def test_container_view_is_the_stages_view_and_refuses_other_keys(modal_cfg, inputs, tmp_path):
    from omegaconf.errors import ConfigAttributeError

    body = payload(modal_cfg, inputs)
    seen = remote.container_view(body["config"])
    assert seen.train.epochs == modal_cfg.train.epochs and list(seen.lora.targets) == list(modal_cfg.lora.targets)
    with pytest.raises(ConfigAttributeError):
        seen.generator  # not the train stage's to read, here as on the laptop
    with pytest.raises(Exception):
        seen.train.epochs = 9  # read-only, as the pipeline hands it
    assert os.environ.get("MODAL_TOKEN_ID") is None  # no test here ever sets a token


@pytest.mark.parametrize("formats, source, wanted", [
    (["gguf"], "gguf", {"llama-cpp-python"}),
    (["mlx_q4"], "gguf", {"mlx-lm", "mlx"}),
    (["merged"], "gguf", set()),
    (["lmstudio"], "mlx", {"mlx-lm", "mlx"}),  # LM Studio on a Mac installs the MLX build
    (["lmstudio"], "gguf", {"llama-cpp-python"}),
])
def test_the_image_carries_exactly_what_the_export_formats_need(formats, source, wanted):
    from omegaconf import OmegaConf

    view = OmegaConf.create({"export": {"formats": {f: True for f in formats}, "lmstudio": {"source": source}}})
    tools = remote.export_packages(view)
    assert {remote.requirement_name(t) for t in tools} == wanted
    assert all(";" not in t for t in tools)  # Linux's own lines, markers evaluated
    if "mlx" in wanted:
        assert any(t.startswith("mlx[cpu]") for t in tools)  # plain mlx cannot import on Linux


def test_a_gguf_export_image_builds_llama_cpp_for_any_cpu(monkeypatch):
    import modal

    steps = []
    for name in ("uv_pip_install", "apt_install", "env"):
        monkeypatch.setattr(modal.Image, name, lambda self, *a, _n=name, **k: steps.append((_n, a)) or self)
    remote.build_image(["llama-cpp-python[server]==0.3.36"])
    names = [n for n, _ in steps]
    assert names[:4] == ["uv_pip_install", "apt_install", "env", "uv_pip_install"]  # torch layer first, tools after
    assert steps[2][1][0] == {"CMAKE_ARGS": remote.PORTABLE_LLAMA_CPP}
    assert steps[3][1] == ("llama-cpp-python[server]==0.3.36",)
