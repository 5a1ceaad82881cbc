"""Greedy generation with a transformers model, for probes, evaluation and parity."""

from __future__ import annotations


def generate(model, tokenizer, conversations: list[list[dict]], caps: list[int], end_ids: list[int],
             batch_size: int = 4) -> list[dict]:
    """Greedy replies (prompt = conversation without its last assistant turn, if any)."""
    out = []
    for start in range(0, len(conversations), batch_size):
        out += _generate_batch(model, tokenizer, conversations[start: start + batch_size],
                               caps[start: start + batch_size], end_ids)
    return out


def _generate_batch(model, tokenizer, convs, caps, end_ids) -> list[dict]:
    import torch

    prompts = [c[:-1] if c[-1]["role"] == "assistant" else c for c in convs]
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    tokenizer.padding_side = "left"  # decoder-only batches must end where generation starts
    # Inputs follow the model: on CUDA or MPS a CPU tensor would fail inside the first layer.
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=max(caps), do_sample=False, eos_token_id=end_ids,
                             pad_token_id=tokenizer.pad_token_id, use_cache=True)
    if was_training:
        model.train()
    return [_reply(tokenizer, row[enc["input_ids"].shape[1]:].tolist(), cap, end_ids)
            for row, cap in zip(gen, caps)]


def _reply(tokenizer, ids: list[int], cap: int, end_ids: list[int]) -> dict:
    """Text up to the first end token within the cap; `ended` says whether one came."""
    ids = ids[:cap]
    stop = next((i for i, t in enumerate(ids) if t in end_ids), None)
    body = ids if stop is None else ids[:stop]
    return {"text": tokenizer.decode(body, skip_special_tokens=True).strip(),
            "raw": tokenizer.decode(body, skip_special_tokens=False),  # what a chat UI would show
            "ended": stop is not None, "tokens": len(body)}
