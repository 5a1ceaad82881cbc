"""Merged export: the adapter folded into the base weights, saved with everything a runtime needs.

mlx-lm and llama.cpp cannot read a PEFT adapter, so every other format converts from this folder.
Three details decide whether the model stops once it leaves transformers:
- `generation_config.json` lists every end token (tokenizer eos + the template's end-of-turn),
  because runtimes stop on these ids, not on the template;
- the chat template is the training template, with the persona as the default system prompt, so
  a chat that sends no system message (LM Studio, llama.cpp's server) still gets the persona;
- `tokenizer_config.json` names `PreTrainedTokenizerFast`: transformers 5 writes
  `TokenizersBackend`, which transformers 4 (and the tools built on it) cannot load.
"""

from __future__ import annotations

import json
from pathlib import Path

from voicetune import backends
from voicetune.chat import end_token_ids, persona_template

# Keys transformers 5 writes that only describe how it was loaded.
LOADER_KEYS = ("backend", "is_local", "local_files_only")


def build_merged(cfg, adapter: Path, folder: Path, cache, tok) -> None:
    """Merge the adapter into the base model; save weights, tokenizer (the template training
    rendered with), template, generation config."""
    import copy

    # The backend that trained it merges it: Unsloth dequantizes its own 4-bit base on the GPU.
    backends.module(cfg.train.backend).merge(cfg, cache, adapter, folder)
    tok = copy.deepcopy(tok)  # the run's tokenizer keeps the training template
    _stop_on_every_end_token(folder, end_token_ids(tok, list(cfg.model.end_tokens)), tok.pad_token_id)
    tok.chat_template = persona_template(tok.chat_template, cfg.corpus.persona)
    tok.save_pretrained(folder)
    portable_tokenizer_config(folder / "tokenizer_config.json", tok.chat_template)


def _stop_on_every_end_token(folder: Path, ends: list[int], pad: int | None) -> None:
    """generation_config.json and config.json list every end token (runtimes stop on these ids)."""
    from transformers import AutoConfig, GenerationConfig

    gen = GenerationConfig.from_pretrained(folder)
    gen.eos_token_id, gen.pad_token_id = ends, pad if pad is not None else ends[0]
    gen.save_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    config.eos_token_id = ends if len(ends) > 1 else ends[0]
    config.save_pretrained(folder)


def portable_tokenizer_config(path: Path, template: str) -> None:
    """A tokenizer_config.json that transformers 4 and 5 both load, template included."""
    conf = json.loads(path.read_text())
    for key in LOADER_KEYS:
        conf.pop(key, None)
    conf["tokenizer_class"] = "PreTrainedTokenizerFast"
    conf["chat_template"] = template  # transformers < 4.47 reads it only from here
    path.write_text(json.dumps(conf, indent=2, ensure_ascii=False) + "\n")
