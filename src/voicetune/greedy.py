"""Greedy generation with a transformers model, for probes, evaluation and parity."""

from __future__ import annotations


def generate(model, tokenizer, conversations: list[list[dict]], caps: list[int], end_ids: list[int],
             batch_size: int = 4, desc: str | None = None) -> list[dict]:
    """Greedy replies in input order (prompt: without the last assistant turn); a progress bar if `desc`."""
    from tqdm.auto import tqdm

    # A batch runs to its longest cap unless every row ends: batching by cap keeps a 30-token
    # sentence from waiting on a 1,200-token section.
    order = sorted(range(len(conversations)), key=lambda i: caps[i])
    out: list[dict] = [{}] * len(conversations)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=desc is None, unit="batch"):
        batch = order[start: start + batch_size]
        replies = _generate_batch(model, tokenizer, [conversations[i] for i in batch], [caps[i] for i in batch], end_ids)
        for i, reply in zip(batch, replies):
            out[i] = reply
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
