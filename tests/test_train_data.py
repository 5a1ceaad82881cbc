"""Training data invariants: which tokens are trained, weighted draws, packing isolation."""

from collections import Counter

import pytest

from voicetune.chat import IGNORE, encode
from voicetune.packing import PackedCollator, pack, packed_rows, weighted_schedule

MESSAGES = [{"role": "system", "content": "You write like the author."},
            {"role": "user", "content": "Rewrite: results was good, p<0.05."},
            {"role": "assistant", "content": "The results were significant (p < 0.05)."}]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from conftest import make_cfg
    from voicetune.cache import Cache
    from voicetune.chat import load_tokenizer

    cache = tmp_path_factory.mktemp("cache")
    return load_tokenizer(make_cfg([], cache).model, Cache(cache))


@pytest.mark.slow
def test_labels_train_the_reply_and_its_end_token_only(tokenizer):
    ex = encode(MESSAGES, tokenizer, ["<|im_end|>"])
    tokens = tokenizer.convert_ids_to_tokens(ex["input_ids"])
    trained = [t for t, lab in zip(tokens, ex["labels"]) if lab != IGNORE]
    reply = tokenizer.convert_ids_to_tokens(tokenizer("The results were significant (p < 0.05).",
                                                      add_special_tokens=False)["input_ids"])
    # Token by token: exactly the reply, then <|im_end|> — which is also SmolLM2's pad token.
    assert trained == reply + ["<|im_end|>"]
    assert tokenizer.pad_token == "<|im_end|>"
    assert tokens[-1] == "<|im_end|>" and ex["labels"][-1] == ex["input_ids"][-1]
    # The prompt's own <|im_end|> tokens (system, user) are not trained.
    prompt_ends = [i for i, t in enumerate(tokens[:-1]) if t == "<|im_end|>"]
    assert len(prompt_ends) == 2 and all(ex["labels"][i] == IGNORE for i in prompt_ends)
    # Labels align with inputs (the model shifts them itself).
    assert all(lab in (IGNORE, tok) for lab, tok in zip(ex["labels"], ex["input_ids"]))


def test_weighted_draws_follow_section_weights():
    weights = [2.0] * 10 + [1.0] * 10 + [0.25] * 10  # abstract, methods, unknown
    draws = Counter(weighted_schedule(weights, epochs=400, seed=3))
    per_group = [sum(draws[i] for i in range(g * 10, g * 10 + 10)) for g in range(3)]
    total = sum(per_group)
    assert total == 400 * 30
    for got, want in zip(per_group, [2 / 3.25, 1 / 3.25, 0.25 / 3.25]):
        assert abs(got / total - want) < 0.01


def test_schedule_is_seeded():
    assert weighted_schedule([1, 2, 3], 2, 7) == weighted_schedule([1, 2, 3], 2, 7)
    assert weighted_schedule([1, 2, 3], 5, 7) != weighted_schedule([1, 2, 3], 5, 8)


def test_pack_fills_rows_without_overflow():
    lengths = [700, 300, 500, 500, 200, 1000, 100]
    rows = pack(lengths, list(range(len(lengths))), 1024)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 1024 for r in rows)
    assert len(rows) == 4  # 3,300 tokens need at least 4 rows of 1,024


def test_collator_restarts_positions_and_reports_efficiency():
    examples = [{"input_ids": [5] * n, "labels": [IGNORE] * (n - 2) + [5, 5]} for n in (6, 4, 3)]
    batch = PackedCollator(examples, pad_id=0, seq_len=16)([[0, 1], [2]])
    assert batch["position_ids"].tolist()[0] == list(range(6)) + list(range(4))
    assert batch["position_ids"].tolist()[1] == list(range(3)) + list(range(7))  # pad segment restarts
    assert batch["labels"].tolist()[1][3:] == [IGNORE] * 7
    assert int(batch["real_tokens"]) == 13 and batch["input_ids"].numel() == 20
    rows = packed_rows(examples, [0, 1, 2, 0, 1, 2], seq_len=16, chunk=3, seed=0)
    assert sum(len(r) for r in rows) == 6


@pytest.mark.slow
def test_packed_sequences_do_not_attend_to_each_other(tokenizer, tmp_path):
    """Logits of an example are the same alone and packed behind another (SDPA, no cache)."""
    import torch

    from conftest import make_cfg
    from voicetune.cache import Cache
    from voicetune.models import load_model

    model = load_model(make_cfg([], tmp_path).model, Cache(tmp_path)).eval()
    a = encode(MESSAGES, tokenizer, ["<|im_end|>"])
    b = encode([MESSAGES[0], MESSAGES[1], {"role": "assistant", "content": "Something else entirely."}],
               tokenizer, ["<|im_end|>"])
    collate = PackedCollator([a, b], tokenizer.pad_token_id, 512)
    packed = collate([[1, 0]])
    packed.pop("real_tokens"), packed.pop("labels")
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([a["input_ids"]]), use_cache=False).logits[0]
        both = model(**packed, use_cache=False).logits[0]
    start = len(b["input_ids"])
    assert torch.allclose(both[start: start + len(a["input_ids"])], alone, atol=1e-4)
