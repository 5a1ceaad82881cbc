"""Greedy generation for probes and evaluation, and the fixed probe panel.

The cap is ~1.5x the reference's tokens: long enough that a model which writes at the right
length always finishes, short enough that a runaway (no end-of-turn token) is cheap to spot.
"""

from __future__ import annotations

import math
import random

# Probe panel: 2 paragraphs, 1 section, 1 abstract (filled from other shapes when the valid
# papers lack one). Four greedy generations cost ~1 min per eval on 2 CPU cores.
PANEL = {"paragraph": 2, "section": 1, "abstract": 1}
PANEL_SIZE = 4


def one_style_per_passage(records: list[dict], seed: int) -> list[dict]:
    """One record per original passage (seeded pick of its rough style), in seeded order."""
    by_passage: dict[str, list[dict]] = {}
    for rec in sorted(records, key=lambda r: r["id"]):
        by_passage.setdefault(rec["messages"][2]["content"], []).append(rec)
    rng = random.Random(seed)
    pool = [rng.choice(group) for group in by_passage.values()]
    rng.shuffle(pool)
    return pool


def probe_panel(valid: list[dict], seed: int) -> list[dict]:
    """The same probes for every run that shares a dataset: seeded picks from the valid split."""
    pool = one_style_per_passage(valid, seed)
    chosen = []
    for shape, n in PANEL.items():
        chosen += [r for r in pool if r["shape"] == shape][:n]
    rest = [r for r in pool if r not in chosen]
    chosen += rest[: max(0, PANEL_SIZE - len(chosen))]
    return [{"probe_id": f"p{i}-{r['shape']}", **r} for i, r in enumerate(chosen)]


def token_cap(reference_tokens: int) -> int:
    """max_new_tokens for a reference of this length (1.5x, plus room for the end token)."""
    return math.ceil(1.5 * reference_tokens) + 8


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
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
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
