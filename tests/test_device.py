"""Model calls follow the model's device: a CPU test catches an input left on the CPU.

The model is built on PyTorch's `meta` device; a forward pre-hook (for a loss) or a spy on
`generate` (transformers' own generate calls `.item()`, which a meta tensor cannot answer) records
the device of every tensor handed to the model, then stops the call. Inputs left on the CPU (the
first eval on a CUDA or MPS machine would crash) show up as `cpu` here.
"""

from __future__ import annotations

import pytest

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


class Stop(Exception):
    """Raised by the hook once it has seen the forward's inputs."""


@pytest.fixture
def meta_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    with torch.device("meta"):
        model = LlamaForCausalLM(config)
    seen: list[str] = []

    def check(module, args, kwargs):
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        seen.extend(str(t.device) for t in tensors)
        raise Stop

    model.register_forward_pre_hook(check, with_kwargs=True)
    return model, seen


@pytest.fixture
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<|im_start|>", "<|im_end|>", "[UNK]", "system", "user", "assistant", "draft", "text"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                   unk_token="[UNK]")
    fast.chat_template = CHATML
    return fast


def test_greedy_generation_sends_its_inputs_to_the_models_device(meta_model, tokenizer):
    import torch

    from voicetune.greedy import generate

    model, seen = meta_model

    def spy(**kwargs):
        seen.extend(str(v.device) for v in kwargs.values() if isinstance(v, torch.Tensor))
        raise Stop

    model.generate = spy
    convs = [[{"role": "user", "content": "draft text"}], [{"role": "user", "content": "text"}]]
    with pytest.raises(Stop):
        generate(model, tokenizer, convs, [4, 4], [1])  # probes, eval and parity's transformers runtime
    assert seen and set(seen) == {"meta"}


def test_eval_loss_sends_its_batches_to_the_models_device(meta_model):
    from voicetune.stages.eval import mean_loss

    model, seen = meta_model
    examples = [{"input_ids": [3, 4, 5, 1], "labels": [-100, -100, 5, 1]}, {"input_ids": [3, 6, 1], "labels": [-100, 6, 1]}]
    with pytest.raises(Stop):
        mean_loss(model, examples, seq_len=16, pad_id=1, batch_size=2)
    assert seen and set(seen) == {"meta"}


def _spy_generate(model, seen):
    import torch

    def spy(**kwargs):
        seen.extend(str(v.device) for v in kwargs.values() if isinstance(v, torch.Tensor))
        raise Stop

    model.generate = spy


def test_training_probes_send_their_inputs_to_the_models_device(meta_model, tokenizer):
    from types import SimpleNamespace

    from voicetune.stages.train.callbacks import ProbeCallback
    from voicetune.stages.train.trainer import PackedTrainer

    model, seen = meta_model
    _spy_generate(model, seen)
    probe = {"probe_id": "p1", "shape": "paragraph", "messages": [
        {"role": "system", "content": "text"}, {"role": "user", "content": "draft"},
        {"role": "assistant", "content": "text"}]}
    callback = ProbeCallback(tokenizer, [probe], [4], ["<|im_end|>"], history=SimpleNamespace(data={"generations": []}))
    callback.trainer = SimpleNamespace(generate=lambda *a: PackedTrainer.generate(SimpleNamespace(model=model), *a))
    with pytest.raises(Stop):
        callback.on_evaluate(None, SimpleNamespace(global_step=1), None, model=model)
    assert seen and set(seen) == {"meta"}


def test_parity_transformers_runtime_sends_its_inputs_to_the_models_device(meta_model, tokenizer):
    from voicetune.stages.export.runtimes import Transformers

    model, seen = meta_model
    _spy_generate(model, seen)
    runtime = Transformers("transformers", "merged", model, tokenizer, ["<|im_end|>"])
    with pytest.raises(Stop):
        runtime.generate([[{"role": "user", "content": "draft text"}]], [4])
    assert seen and set(seen) == {"meta"}


def test_inference_placement_is_fp32_on_this_cpu():
    import torch

    from voicetune.models import inference_placement

    expected = ("cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu")
    device, dtype = inference_placement()
    assert device == expected
    assert dtype == {"cpu": torch.float32, "mps": torch.float16}.get(device, dtype)
    if device == "cuda":
        assert dtype in (torch.bfloat16, torch.float16)
