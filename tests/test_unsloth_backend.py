"""The `unsloth` backend up to the GPU boundary: backend choice, Unsloth's arguments, the shared trainer.

Unsloth itself cannot run here (it needs CUDA, and installing it replaces the CPU torch), so a
stand-in `unsloth` module records what FastLanguageModel was asked for and answers with a real
model: loaded from the path it was given, wrapped by the project's own `lora_model`.
"""

import importlib.machinery
import sys
import types
from types import SimpleNamespace

import pytest

from voicetune.errors import UserError
from voicetune.backends import module as backend_module
from voicetune.chat import IGNORE
from voicetune.packing import grouped_rows
from voicetune.pipeline import CHOICES


def pick_backend(cfg) -> str:
    """What the pipeline resolves train.backend to before any stage runs."""
    return CHOICES["train.backend"](cfg, ["train"])


@pytest.fixture
def fake_unsloth(monkeypatch):
    """An importable `unsloth` whose FastLanguageModel records its calls and returns real models."""
    calls = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kwargs):
            from transformers import AutoModelForCausalLM, AutoTokenizer

            calls["from_pretrained"] = kwargs
            return (AutoModelForCausalLM.from_pretrained(kwargs["model_name"]),
                    AutoTokenizer.from_pretrained(kwargs["tokenizer_name"]))

        @staticmethod
        def get_peft_model(model, **kwargs):
            from voicetune.backends.hf import lora_model

            calls["get_peft_model"] = kwargs
            lora = SimpleNamespace(r=kwargs["r"], alpha=kwargs["lora_alpha"], dropout=kwargs["lora_dropout"],
                                   targets=kwargs["target_modules"])
            return lora_model(model, lora)

    module = types.ModuleType("unsloth")
    module.__spec__ = importlib.machinery.ModuleSpec("unsloth", None)  # find_spec reads it
    module.FastLanguageModel = FastLanguageModel
    monkeypatch.setitem(sys.modules, "unsloth", module)
    return calls


@pytest.fixture
def cuda(monkeypatch):
    """cuda(True) makes torch report a CUDA device."""
    import torch

    return lambda on: monkeypatch.setattr(torch.cuda, "is_available", lambda: on)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A one-layer Llama and a word-level tokenizer saved as a plain model folder (what model_source returns)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-llama")
    words = ["<unk>", "<|im_end|>", "<|im_start|>"] + [f"w{i}" for i in range(29)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                            pad_token="<|im_end|>").save_pretrained(folder)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def tiny_overrides(folder) -> list[str]:
    return [f"model.name_or_path={folder}", "model.gguf_file=null", "model.name=tiny", "tracking=disabled",
            "train.backend=unsloth", "train.seq_len=64", "train.batch_size=2", "train.grad_accum=1",
            "train.max_steps=1", "train.eval_steps=1000", "train.save_steps=1000",
            "lora.r=4", "lora.alpha=8", "lora.dropout=0.1", "lora.targets=[q_proj,v_proj]", "train.seed=7"]


def test_auto_picks_unsloth_only_with_cuda_and_unsloth(cfg_factory, fake_unsloth, cuda, monkeypatch):
    cfg = cfg_factory(["train.backend=auto"])
    cuda(True)
    assert pick_backend(cfg) == "unsloth"
    cuda(False)
    assert pick_backend(cfg) == "hf"
    cuda(True)
    monkeypatch.delitem(sys.modules, "unsloth")  # not installed on this machine
    assert pick_backend(cfg) == "hf"


def test_backend_errors_are_one_line(cfg_factory, cuda, monkeypatch):
    from conftest import CONF
    from voicetune.preflight import compose_checked

    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    cuda(False)
    with pytest.raises(UserError) as err:  # refused at composition, before any stage runs
        compose_checked(CONF, ["train.backend=tensorflow"])
    assert str(err.value) == "train.backend: Invalid value 'tensorflow', expected one of [auto, hf, unsloth, mlx]"
    for backend, where, says in (("unsloth", [], "needs a CUDA GPU"), ("mlx", ["compute=modal"], "trains on this Mac")):
        with pytest.raises(UserError) as err:
            pick_backend(cfg_factory([f"train.backend={backend}", *where]))
        assert str(err.value).replace("'", "").startswith(f"train.backend={backend}:") and says in str(err.value)
        assert "\n" not in str(err.value)
    # On Modal the GPU machine checks: nothing here refuses the run before it is sent.
    assert pick_backend(cfg_factory(["train.backend=unsloth", "compute=modal"])) == "unsloth"


def test_unsloth_gets_its_arguments_from_the_config(cfg_factory, fake_unsloth, tiny_model_dir, cuda, tmp_path):
    from voicetune.cache import Cache
    from voicetune.stages.train.trainer import PackedTrainer, make_trainer

    cuda(True)
    from voicetune.chat import load_tokenizer

    cfg = cfg_factory(tiny_overrides(tiny_model_dir))
    backend = backend_module(pick_backend(cfg))
    cache = Cache(cfg.cache_dir)
    model = backend.load(cfg, cache, load_tokenizer(cfg.model, cache))
    assert fake_unsloth["from_pretrained"] == {
        "model_name": str(tiny_model_dir), "tokenizer_name": str(tiny_model_dir), "max_seq_length": 64,
        "load_in_4bit": True, "dtype": None}
    assert fake_unsloth["get_peft_model"] == {
        "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.1,
        "use_gradient_checkpointing": "unsloth", "random_state": 7}
    assert model.peft_config["default"].r == 4

    # The same trainer as the hf backend, on one example per row in length-grouped batches
    # (trained on the CPU: past the load, the GPU is the machine's, not the code's, business).
    cuda(False)
    tok = SimpleNamespace(pad_token_id=1)
    examples = [{"input_ids": [3 + i % 20] * n, "labels": [IGNORE] * (n // 2) + [3] * (n - n // 2)}
                for i, n in enumerate([5, 40, 7, 38, 6, 41])]
    trainer = make_trainer(cfg, model, tok, examples, examples[:2], [1.0] * 6, tmp_path, [],
                           pack=backend.PACKED_ROWS_ISOLATED)
    assert type(trainer) is PackedTrainer
    assert all(len(row) == 1 for row in trainer.train_dataset)
    trainer.train()
    assert trainer.state.global_step == 1 and 0 < trainer.real_tokens <= trainer.computed_tokens


def test_hf_backend_packs_and_unsloth_does_not():
    assert backend_module("hf").PACKED_ROWS_ISOLATED is True
    from voicetune.backends import unsloth

    assert unsloth.PACKED_ROWS_ISOLATED is False


def test_grouped_rows_batch_similar_lengths_and_keep_every_draw():
    lengths = [10, 500, 20, 480, 15, 510, 12, 490]
    examples = [{"input_ids": [0] * n} for n in lengths]
    schedule = list(range(8)) * 2 + [1]  # two chunks of 8, and one draw left over
    rows = grouped_rows(examples, schedule, batch=2, chunk=8, seed=0)
    assert sorted(r[0] for r in rows) == sorted(schedule) and all(len(r) == 1 for r in rows)
    batches = [[lengths[r[0]] for r in rows[i: i + 2]] for i in range(0, 16, 2)]
    assert all(max(b) - min(b) <= 30 for b in batches)  # short with short, long with long
    assert rows[-1] == [1]  # a chunk's short batch goes last, so the full ones stay aligned
    assert grouped_rows(examples, schedule, 2, 8, 0) == rows != grouped_rows(examples, schedule, 2, 8, 1)


def test_save_merged_asks_unsloth_for_a_16_bit_merge(tmp_path):
    from voicetune.backends.unsloth import save_merged

    seen = []
    model = SimpleNamespace(save_pretrained_merged=lambda *a, **k: seen.append((a, k)))
    save_merged(model, "TOKENIZER", tmp_path / "merged")
    assert seen == [((str(tmp_path / "merged"), "TOKENIZER"), {"save_method": "merged_16bit"})]


def test_cuda_requirements_hold_the_one_pin(monkeypatch, tmp_path):
    from importlib import metadata

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    from conftest import ROOT
    from voicetune.backends import unsloth

    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["cuda"]
    assert unsloth.cuda_requirements() == pinned and any(r.startswith("unsloth==") for r in pinned)
    # Installed from a wheel (no source tree): the metadata's requirements marked extra == "cuda".
    monkeypatch.setattr(unsloth, "PYPROJECT", tmp_path / "absent.toml")
    monkeypatch.setattr(metadata, "requires", lambda name: [
        "torch>=2.4", 'pytest>=8; extra == "dev"', 'unsloth==2026.10.9; extra == "cuda"',
        'extra-thing>=1; sys_platform == "linux" and extra == "cuda"'])
    assert unsloth.cuda_requirements() == ["unsloth==2026.10.9", 'extra-thing>=1; sys_platform == "linux"']


@pytest.mark.slow
def test_embedded_model_trains_through_the_unsloth_path(fake_unsloth, cuda, tmp_path):
    """The real SmolLM2 (GGUF converted in the cache) loads through the backend and trains a step on a real record."""
    from conftest import make_cfg
    from voicetune.cache import Cache
    from voicetune.chat import encode, end_tokens, load_tokenizer
    from voicetune.models import model_source
    from voicetune.stages.train.trainer import make_trainer

    cuda(True)
    cfg = make_cfg(["tracking=disabled", "train.backend=auto", "train.seq_len=256", "train.batch_size=1",
                    "train.grad_accum=1", "train.max_steps=1", "train.eval_steps=1000", "train.save_steps=1000"],
                   tmp_path / "cache")
    cache = Cache(cfg.cache_dir)
    backend = backend_module(pick_backend(cfg))
    tok = load_tokenizer(cfg.model, cache)
    model = backend.load(cfg, cache, tok)
    assert fake_unsloth["from_pretrained"]["model_name"] == model_source(cfg.model, cache)
    assert fake_unsloth["from_pretrained"]["tokenizer_name"] == tok.name_or_path  # a GGUF's weights folder has none
    messages = [{"role": "system", "content": "You write like the author."},
                {"role": "user", "content": "Rewrite: results was good."},
                {"role": "assistant", "content": "The results were good."}]
    ex = encode(messages, tok, end_tokens(cfg.model, tok))
    cuda(False)
    trainer = make_trainer(cfg, model, tok, [ex, ex], [ex], [1.0, 1.0], tmp_path, [], pack=backend.PACKED_ROWS_ISOLATED)
    trainer.train()
    assert trainer.state.global_step == 1 and trainer.state.log_history[-1]["train_loss"] > 0
