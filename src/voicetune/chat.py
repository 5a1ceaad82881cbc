"""The chat side of a model: tokenizer and template, persona default, end tokens, token counts,
token caps and training labels. Every stage that renders a conversation goes through here.

Reading a GGUF with transformers costs ~12 s for the tokenizer alone (it imports torch and
parses the whole file), so the first load saves a plain tokenizer folder into the cache and
later loads take it from there.
"""

from __future__ import annotations

import json
import math

from voicetune.cache import Cache, save_pretrained_atomic
from voicetune.errors import UserError
from voicetune.models import gguf_id

# Llama 3.1's reserved padding token: never trained on, so padding cannot teach it anything.
PAD_FALLBACK = "<|finetune_right_pad_id|>"
IGNORE = -100  # label of a token the loss skips


def load_tokenizer(model_cfg, cache: Cache):
    """The model's tokenizer with the configured chat template applied."""
    from transformers import AutoTokenizer

    if model_cfg.gguf_file:
        folder = cache.models(f"tokenizer-{model_cfg.name}-{gguf_id(model_cfg)}")
        if not folder.is_dir():
            tok = AutoTokenizer.from_pretrained(model_cfg.name_or_path, gguf_file=model_cfg.gguf_file)
            save_pretrained_atomic(tok, folder)
        tok = AutoTokenizer.from_pretrained(folder)
    else:
        try:
            tok = AutoTokenizer.from_pretrained(model_cfg.name_or_path)
        except OSError as exc:
            raise UserError(f"model.name_or_path={model_cfg.name_or_path!r}: cannot load a tokenizer ({exc})".splitlines()[0])
    if model_cfg.chat_template:
        tok.chat_template = model_cfg.chat_template
    if tok.pad_token is None:  # Llama 3.x ships none; batching, packing and generation need one
        tok.pad_token = PAD_FALLBACK if PAD_FALLBACK in tok.get_vocab() else tok.eos_token
    return tok


def _ids(rendered) -> list[int]:
    """apply_chat_template returns a list or a BatchEncoding depending on the version."""
    return list(rendered["input_ids"] if hasattr(rendered, "keys") else rendered)


def chat_token_counter(tokenizer):
    """A function messages -> token count under the model's chat template."""
    return lambda messages: len(_ids(tokenizer.apply_chat_template(messages, tokenize=True)))


def text_token_counter(tokenizer):
    """A function text -> token count, without special tokens."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def persona_template(template: str, persona: str) -> str:
    """The training template, with the persona inserted when a chat sends no system message."""
    literal = json.dumps(persona)  # a JSON string is a valid Jinja string literal
    return ("{%- if messages and messages[0]['role'] != 'system' %}"
            f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}"
            "{%- endif %}" + template)


def end_tokens(model_cfg, tokenizer) -> list[str]:
    """The model's end-of-turn tokens: from the model config, else the tokenizer's eos."""
    return list(model_cfg.end_tokens) or [tokenizer.eos_token]


def end_token_ids(tokenizer, tokens: list[str]) -> list[int]:
    """The tokenizer's eos and every given end-of-turn token, as ids, without repeats."""
    ids = [tokenizer.eos_token_id] + [tokenizer.convert_tokens_to_ids(t) for t in tokens]
    return list(dict.fromkeys(i for i in ids if i is not None))


def token_cap(reference_tokens: int, ratio: float, extra: int) -> int:
    """max_new_tokens for a reference of this length (eval.cap_ratio x, plus room for the end token)."""
    return math.ceil(ratio * reference_tokens) + extra


def caps(tokenizer, references: list[str], eval_cfg) -> list[int]:
    """The token cap of each reference under the `eval` group's cap_ratio and cap_extra."""
    count = text_token_counter(tokenizer)
    return [token_cap(count(r), eval_cfg.cap_ratio, eval_cfg.cap_extra) for r in references]


def encode(messages: list[dict], tokenizer, ends: list[str]) -> dict:
    """input_ids + labels: IGNORE on the prompt, trained on the reply through its end token.

    Loss is taken up to and including the end-of-turn token: the seed's model learned to stop
    early, and SmolLM2's pad token *is* `<|im_end|>`, so a padding mask built from the pad id
    would silently drop the one token that teaches the model to stop.
    """
    prompt_ids = _ids(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True, tokenize=True))
    full_ids = _ids(tokenizer.apply_chat_template(messages, tokenize=True))
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("chat template renders the prompt differently inside the full conversation")
    end_ids = {tokenizer.convert_tokens_to_ids(t) for t in ends}
    # The reply ends at its first end token after the prompt; tokens after it (the template's
    # trailing newline) are not part of what the model should learn to emit.
    stop = next((i for i in range(len(prompt_ids), len(full_ids)) if full_ids[i] in end_ids), None)
    if stop is None:
        raise ValueError(f"no end token {ends} after the assistant reply")
    labels = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids): stop + 1]
    return {"input_ids": full_ids[: stop + 1], "labels": labels}


def encode_records(records: list[dict], tokenizer, ends: list[str], seq_len: int) -> tuple[list, list, int]:
    """Encoded examples that fit seq_len (a truncated one would never see its end token)."""
    kept, recs, dropped = [], [], 0
    for rec in records:
        ex = encode(rec["messages"], tokenizer, ends)
        if len(ex["input_ids"]) > seq_len:
            dropped += 1
            continue
        kept.append(ex)
        recs.append(rec)
    return kept, recs, dropped
