"""The `mlx` backend on the real embedded SmolLM2 under mlx[cpu]: labels, adapter conversions, the pipeline.

- labels: mlx-lm's own prompt masking vs the project's (what each trains on), and the mlx loss on
  the project's labels equal to transformers' loss on the same batch (the hf backend's labels);
- conversions: an mlx-lm adapter as PEFT and a PEFT adapter as mlx-lm give the logits of the
  adapter they came from, and a swapped (untransposed) factor loads and computes something else;
- the pipeline: `train=cpu_tiny train.backend=mlx` trains, evaluates, logs to W&B offline,
  exports (merged, MLX q4) through parity, and resumes after a kill.
"""

import json
import time

import numpy as np
import pytest

from conftest import killed_and_rerun, make_cfg

pytestmark = pytest.mark.slow

RECORD = [{"role": "system", "content": "You write like the author."},
          {"role": "user", "content": "Rewrite: the drug kind of worked on most people"},
          {"role": "assistant", "content": "The treatment was effective in 71% of participants."}]
# mlx[cpu]'s Linux wheel multiplies with the reference BLAS (~3.6 GFLOP/s, numpy here: ~38), so a
# step costs ~0.3 s per token: short rows, one example per step, 16-token probe replies.
MLX = ["train=cpu_tiny", "train.backend=mlx", "train.seq_len=320", "train.grad_accum=1", "train.max_steps=2",
       "train.eval_steps=2", "train.save_steps=2", "eval.loss_records=2", "eval.samples_per_shape=1",
       "eval.cap_ratio=1", "eval.cap_extra=2"]


@pytest.fixture(scope="module")
def cache(e2e_cache):
    return e2e_cache


@pytest.fixture(scope="module")
def cfg(cache):
    return make_cfg(["train.backend=mlx", "train.precision=fp32"], cache)


@pytest.fixture(scope="module")
def tok(cfg, cache):
    from voicetune.cache import Cache
    from voicetune.chat import load_tokenizer

    return load_tokenizer(cfg.model, Cache(cache))


@pytest.fixture(scope="module")
def torch_base(cfg, cache):
    from voicetune.cache import Cache
    from voicetune.models import load_model

    return load_model(cfg.model, Cache(cache)).eval()


def mlx_model(cfg, cache, tok):
    from voicetune.backends import mlx as backend
    from voicetune.cache import Cache

    model = backend.load(cfg, Cache(cache), tok)
    model.eval()  # dropout off
    return model


def randomized(model, seed: int):
    """Both LoRA factors random (B starts at zero: an untouched adapter would prove nothing)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    rng = np.random.default_rng(seed)
    model.load_weights([(k, mx.array(rng.normal(0, 0.02, v.shape).astype(np.float32)))
                        for k, v in tree_flatten(model.trainable_parameters())], strict=False)
    return model


def mlx_logits(model, ids) -> np.ndarray:
    import mlx.core as mx

    return np.array(model(mx.array([ids])))


def torch_logits(model, ids) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits.numpy()


def test_mlx_lm_prompt_masking_adds_two_targets_after_the_end_token(tok):
    from mlx_lm.tuner.datasets import ChatDataset
    from mlx_lm.tuner.trainer import iterate_batches

    from voicetune.chat import IGNORE, encode

    ours = encode(RECORD, tok, ["<|im_end|>"])
    trained = [i for i, label in enumerate(ours["labels"]) if label != IGNORE]
    assert tok.convert_ids_to_tokens(ours["input_ids"][trained[-1]]) == "<|im_end|>"
    dataset = ChatDataset([{"messages": RECORD}], tok, mask_prompt=True)
    tokens, offset = dataset.process(dataset[0])
    batch, lengths = next(iterate_batches([(tokens, offset)], 1, 2048))
    # default_loss trains target position t (token t) for offset <= t <= length
    steps = np.arange(1, batch.shape[1])
    theirs = [int(t) for t in steps[(steps >= int(lengths[0, 0])) & (steps <= int(lengths[0, 1]))]]
    row = np.array(batch)[0]
    assert theirs[: len(trained)] == trained  # the reply and <|im_end|>: the same tokens
    extra = [tok.convert_ids_to_tokens(int(row[t])) for t in theirs[len(trained):]]
    assert extra == ["Ċ", tok.convert_ids_to_tokens(0)]  # the template's newline, then a pad (id 0) target


def test_mlx_loss_on_the_project_labels_equals_the_hf_loss(cfg, cache, tok, torch_base):
    import mlx.core as mx
    import torch

    from voicetune.chat import encode
    from voicetune.packing import PackedCollator
    from voicetune.stages.train.mlx_trainer import masked_loss

    short = [*RECORD[:2], {"role": "assistant", "content": "Effective."}]
    examples = [encode(RECORD, tok, ["<|im_end|>"]), encode(short, tok, ["<|im_end|>"])]
    batch = PackedCollator(examples, tok.pad_token_id, 1024)([[0], [1]])  # padded: the hf rows of batch 2
    with torch.no_grad():
        hf = torch_base(input_ids=batch["input_ids"], labels=batch["labels"]).loss.item()
    model = mlx_model(cfg, cache, tok)
    ce, n = masked_loss(model, mx.array(batch["input_ids"].numpy()), mx.array(batch["labels"].numpy()))
    assert n.item() == int((batch["labels"][:, 1:] != -100).sum())
    # fp32 noise is ~1e-4 (measured 1.4e-4 on 2.96); one token more or less would move the mean by ~0.2
    assert abs(ce.item() / n.item() - hf) < 1e-3


def test_mlx_adapter_as_peft_gives_the_same_logits(cfg, cache, tok, torch_base, tmp_path):
    from peft import PeftModel

    from voicetune.backends.mlx import save_adapter

    model = randomized(mlx_model(cfg, cache, tok), seed=1)
    save_adapter(model, cfg.lora, tmp_path)
    ids = tok("The study found a clear effect of dose on response.")["input_ids"]
    peft = PeftModel.from_pretrained(torch_base, str(tmp_path)).eval()
    try:
        got, want = torch_logits(peft, ids), mlx_logits(model, ids)
        with peft.disable_adapter():
            base = torch_logits(peft, ids)
    finally:
        peft.unload()  # the module's torch_base comes back without LoRA layers
    assert np.abs(got - want).max() < 1e-3
    assert np.abs(base - want).max() > 0.5  # the adapter changes the function: the check has teeth


def test_peft_adapter_as_mlx_gives_the_same_logits(cfg, cache, tok, torch_base, tmp_path):
    import copy

    import mlx.core as mx
    import torch
    from mlx_lm.tuner.utils import load_adapters
    from mlx_lm.utils import load_model

    from voicetune.backends.hf import lora_model
    from voicetune.backends.mlx import base_folder
    from voicetune.backends.mlx_peft import peft_to_mlx
    from voicetune.cache import Cache

    peft = lora_model(copy.deepcopy(torch_base), cfg.lora).eval()  # what a CUDA run saves
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    peft.save_pretrained(tmp_path / "peft")
    peft_to_mlx(tmp_path / "peft", tmp_path / "mlx")
    ids = tok("The study found a clear effect of dose on response.")["input_ids"]
    want = torch_logits(peft, ids)
    folder = base_folder(cfg, Cache(cache), tok)
    model = load_adapters(load_model(folder)[0], str(tmp_path / "mlx"))
    model.eval()
    assert np.abs(mlx_logits(model, ids) - want).max() < 1e-3
    # The classic mistake: the factors swapped without a transpose. Square projections (q, o:
    # 576 x 576) take a [576, r] tensor either way, so it loads and computes another function.
    wrong = load_adapters(load_model(folder)[0], str(tmp_path / "mlx"))
    weights = mx.load(str(tmp_path / "mlx" / "adapters.safetensors"))
    swapped = [(k, weights[k[: -1] + ("b" if k.endswith("a") else "a")].T) for k in weights if ".q_proj." in k]
    wrong.load_weights(swapped, strict=False)
    wrong.eval()
    assert np.abs(mlx_logits(wrong, ids) - want).max() > 0.1


@pytest.fixture(scope="module")
def mlx_run(cache, tmp_path_factory):
    """One mlx run through export: merged + MLX q4, one parity probe per runtime, W&B offline."""
    from voicetune.pipeline import run

    run_dir = tmp_path_factory.mktemp("mlx-run")
    started = time.perf_counter()
    manifest = run(make_cfg(MLX + ["export=[merged,mlx_q4]", "export.parity_probes=1", "stages=[export]"], cache),
                   run_dir)
    return run_dir, manifest, time.perf_counter() - started


def test_mlx_run_trains_evaluates_and_logs_like_hf(mlx_run):
    from voicetune.stages.train.callbacks import GENERATION_COLUMNS
    from voicetune.wandb_read import read_run

    run_dir, manifest, _ = mlx_run
    assert manifest["resolved"]["train.backend"] == "mlx" and manifest["resolved"]["train.precision"] == "fp32"
    history = json.loads((run_dir / "train/history.json").read_text())
    assert [r["step"] for r in history["train"]] == [1, 2] and history["train"][0]["learning_rate"] > 0
    assert [r["step"] for r in history["eval"]] == [2] and history["eval"][0]["eval_loss"] > 0
    panel = [json.loads(line) for line in (run_dir / "probes/probes.jsonl").read_text().splitlines()]
    assert sorted(p["probe_id"] for p in history["generations"]) == sorted(p["probe_id"] for p in panel)
    assert all(set(GENERATION_COLUMNS) <= set(p) for p in history["generations"])
    summary = history["summary"]
    assert summary["steps"] == 2 and summary["real_tokens_per_s"] > 0 and summary["peak_memory_gb"] > 0
    assert summary["device"].startswith("Device(cpu") and summary["trainable_params"] == 1_843_200
    train = next(s for s in manifest["stages"] if s["name"] == "train")
    assert train["metrics"]["peak_memory_of"] == "mlx allocator"
    adapter = run_dir / "train/adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "persona.txt", "tokenizer.json"} <= \
        {p.name for p in adapter.iterdir()}
    assert {p.name for p in (adapter / "mlx").iterdir()} == {"adapters.safetensors", "adapter_config.json"}
    logged = read_run(run_dir)
    keys = set().union(*(row.keys() for row in logged["history"]))
    assert {"train/loss", "eval/loss", "train/learning_rate", "train/real_tokens_per_s"} <= keys
    assert logged["tables"]["eval/generations"]["columns"] == GENERATION_COLUMNS


def test_mlx_adapter_goes_through_eval_export_and_parity(mlx_run):
    run_dir, manifest, _ = mlx_run
    report = json.loads((run_dir / "eval/eval.json").read_text())
    assert set(report["models"]) == {"tuned", "base"} and report["models"]["tuned"]["eval_loss"] > 0
    parity = json.loads((run_dir / "export/parity.json").read_text())
    runtimes = {r["runtime"] for r in parity["rows"]}
    assert {"transformers+peft", "transformers", "mlx-lm"} <= runtimes
    summary = parity["summary"]
    assert summary["template_mismatches"] == [] and summary["leaks"] == [] and summary["ok"] is (not summary["failed"])
    for row in parity["rows"]:  # a 2-step model may not stop yet: the gate follows the stop rate, nothing else
        assert row["gate"] == ("pass" if row["stop_rate"] >= summary["min_stop_rate"] else "FAILED"), row
    import mlx.core as mx

    rows = {r["runtime"]: r for r in parity["rows"]}
    if not mx.metal.is_available():  # mlx[cpu]: the drafts with the smallest caps, the rest of the panel apart
        assert rows["mlx-lm"]["probes"] == min(2, rows["transformers"]["probes"])
    # MLX straight from the mlx adapter (fused into its MLX base), the merged folder only for the rest.
    artifacts = json.loads((run_dir / "export/artifacts.json").read_text())
    assert artifacts["mlx_q4"]["from"] == "adapter" and artifacts["merged"]["from"] == "adapter"
    config = json.loads((run_dir / "export/mlx_q4/config.json").read_text())
    assert config["rope_theta"] == 100000.0 and config["quantization"]["bits"] == manifest["resolved"]["export.mlx.q_bits"]
    weights = mx.load(str(run_dir / "export/mlx_q4/model.safetensors"))  # fused: no LoRA factor left
    assert not [k for k in weights if "lora" in k] and any(k.endswith(".scales") for k in weights)


def test_killed_mlx_training_resumes_from_its_checkpoint(cache, tmp_path):
    args = [*MLX, "train.max_steps=2", "train.save_steps=1", "train.eval_steps=2", "tracking=disabled",
            "stages=[train]"]
    history = killed_and_rerun(args, cache, tmp_path, checkpoint=1)
    assert history["summary"]["resumed_from"] == "checkpoint-1" and history["summary"]["steps"] == 2
    assert [r["step"] for r in history["train"]] == [1, 2]


def tiny_lora_model(cfg):
    """A 2-block mlx-lm llama with the backend's LoRA layers (seeded), for the loop's own tests."""
    import mlx.core as mx
    from mlx_lm.models.llama import Model, ModelArgs
    from mlx_lm.tuner.utils import linear_to_lora_layers

    from voicetune.backends.mlx import lora_parameters

    mx.random.seed(0)
    model = Model(ModelArgs(model_type="llama", hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=40))
    model.freeze()
    linear_to_lora_layers(model, 2, lora_parameters(cfg.lora, model))
    return model


@pytest.mark.parametrize("kill_at", [2])
def test_mlx_loop_resumed_from_a_checkpoint_ends_where_an_unbroken_run_ends(cfg_factory, tmp_path, kill_at):
    from types import SimpleNamespace

    import mlx.core as mx
    from mlx.utils import tree_flatten
    from transformers import TrainerCallback

    from voicetune.stages.train.mlx_trainer import make_trainer

    cfg = cfg_factory(["train.max_steps=4", "train.save_steps=2", "train.eval_steps=100", "train.batch_size=2",
                       "train.grad_accum=1", "lora.dropout=0", "tracking=disabled"])
    tok = SimpleNamespace(pad_token_id=0)
    rng = np.random.default_rng(0)
    examples = [{"input_ids": list(map(int, rng.integers(1, 40, n))), "labels": [-100] * 3 + list(map(int, rng.integers(1, 40, n - 3)))}
                for n in (9, 12, 7, 15, 10, 8)]

    class Kill(TrainerCallback):  # the process dies right after its checkpoint at `kill_at`
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == kill_at

    def run(out, resume=None, killed=False):
        model = tiny_lora_model(cfg)
        trainer = make_trainer(cfg, model, tok, examples, examples[:2], [1.0] * 6, out, [Kill()] if killed else [])
        trainer.args.disable_tqdm = True
        trainer.train(resume_from_checkpoint=resume)
        return trainer, dict(tree_flatten(model.trainable_parameters()))

    whole, want = run(tmp_path / "whole")
    assert whole.state.global_step == 4 and [r["step"] for r in whole.state.log_history if "loss" in r] == [1, 2, 3, 4]
    broken, _ = run(tmp_path / "broken", killed=True)
    assert broken.state.global_step == kill_at
    checkpoint = tmp_path / "broken" / "checkpoints" / f"checkpoint-{kill_at}"
    assert {p.name for p in checkpoint.iterdir()} >= {"adapters.safetensors", "optimizer.safetensors", "trainer_state.json"}
    resumed, got = run(tmp_path / "broken", resume=str(checkpoint))
    assert resumed.state.global_step == 4
    assert max(float(mx.abs(got[k] - want[k]).max()) for k in want) < 1e-6
    assert sorted(p.name for p in (tmp_path / "broken" / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]


def test_the_adapter_command_turns_the_runs_peft_adapter_back_into_its_mlx_adapter(mlx_run, tmp_path):
    import mlx.core as mx

    from voicetune.cli import main

    adapter = mlx_run[0] / "train/adapter"
    assert main(["adapter", str(adapter), "--to", "mlx", str(tmp_path / "back")]) == 0
    want, got = mx.load(str(adapter / "mlx/adapters.safetensors")), mx.load(str(tmp_path / "back/adapters.safetensors"))
    assert set(got) == set(want) and max(float(mx.abs(got[k] - want[k]).max()) for k in want) < 1e-6


def test_the_adapter_command_refuses_a_folder_without_that_adapter_in_one_line(tmp_path, capsys):
    from voicetune.cli import main

    assert main(["adapter", str(tmp_path), "--to", "mlx", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no adapter_model.safetensors" in err and str(tmp_path) in err
