"""Units of each response shape, per-shape limits, the token budget, paragraph-boundary splits."""

import pytest

from voicetune.shapes import build_units, candidates, split_sentences, targets


def wants(cfg) -> dict:
    """What the units stage asks build_units for: data.shapes as unit counts."""
    return targets(cfg.data.shapes, cfg.data.max_units)

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def para(n: int, seed: int = 0) -> str:
    """A paragraph of n words made of two sentences."""
    words = [WORDS[(i + seed) % len(WORDS)] for i in range(n)]
    half = n // 2
    return " ".join(["The"] + words[:half]) + ". " + " ".join(["It"] + words[half:]) + "."


def paper(pid: str, sections: dict[str, list[str]]) -> dict:
    return {"id": pid, "sections": [{"name": k, "title": k, "paragraphs": v} for k, v in sections.items()]}


def words_counter(messages):
    return sum(len(m["content"].split()) for m in messages) + 5 * len(messages)


def text_counter(text):
    return len(text.split())


def test_sentence_split_keeps_abbreviations():
    text = "Smith et al. found 3.5% gains (Fig. 2). We used e.g. ridge regression. It worked!"
    assert split_sentences(text) == ["Smith et al. found 3.5% gains (Fig. 2).",
                                     "We used e.g. ridge regression.", "It worked!"]


def test_candidates_per_shape():
    p = paper("p1", {"abstract": [para(80)], "methods": [para(60, 1), para(60, 2), para(60, 3)]})
    assert [u["shape"] for u in candidates(p, "abstract")] == ["abstract"]
    paragraphs = candidates(p, "paragraph")
    assert len(paragraphs) == 3 and {u["section"] for u in paragraphs} == {"methods"}
    (section,) = candidates(p, "section")
    assert section["paragraphs"] == 3 and section["text"].count("\n\n") == 2
    assert len(candidates(p, "sentence")) == 6  # 2 per methods paragraph, abstract excluded
    unit = paragraphs[0]
    assert set(unit) >= {"id", "paper", "section", "shape", "text", "words", "paragraphs"}


def test_targets_fraction_or_count():
    assert targets({"paragraph": 0.7, "section": 0.15, "abstract": 0.15}, 100) == \
        {"paragraph": 70, "section": 15, "abstract": 15}
    assert targets({"sentence": 250, "paragraph": 0}, 100) == {"sentence": 250}


def test_shape_mix_records_tokens_and_respects_limits(cfg_factory):
    cfg = cfg_factory(["data=shape_mix", "data.max_units=20"])
    papers = [paper(f"p{i}", {"abstract": [para(100, i)], "results": [para(50, i), para(70, i), para(5)]})
              for i in range(6)]
    units, dropped, report = build_units(cfg, papers, words_counter, text_counter, wants(cfg))
    shapes = {u["shape"] for u in units}
    assert shapes == {"paragraph", "section", "abstract"}
    assert report["paragraph"] == {"wanted": 14, "available": 12, "chosen": 12}
    assert report["abstract"]["chosen"] == 3  # 15% of 20, from 6 available
    assert all(u["tokens"] == u["words"] for u in units)
    assert any(d["reason"] == "under 40 words" for d in dropped)  # the 6-word paragraph


def test_long_section_is_split_on_paragraph_boundaries(cfg_factory):
    cfg = cfg_factory(["data=shape_mix", "data.max_tokens=600"])
    paras = [para(90, i) for i in range(6)]
    units, _, _ = build_units(cfg, [paper("p", {"discussion": paras})], words_counter, text_counter, wants(cfg))
    sections = [u for u in units if u["shape"] == "section"]
    assert len(sections) >= 2
    for unit in sections:
        assert unit["paragraphs"] >= 2
        assert all(p in paras for p in unit["text"].split("\n\n"))  # whole paragraphs only
        assert unit["tokens"] * 2.6 + 60 <= 600


def test_too_long_abstract_is_dropped_with_reason(cfg_factory):
    cfg = cfg_factory(["data=shape_mix", "data.max_tokens=300"])
    _, dropped, _ = build_units(cfg, [paper("p", {"abstract": [para(200)]})], words_counter, text_counter, wants(cfg))
    assert "over the budget of 300" in dropped[0]["reason"]


def test_sentence_data_is_sentences_only(cfg_factory):
    cfg = cfg_factory(["data=sentence"])
    papers = [paper("p", {"introduction": [para(30, 1), para(40, 2)], "abstract": [para(80)]})]
    units, _, _ = build_units(cfg, papers, words_counter, text_counter, wants(cfg))
    assert units and {u["shape"] for u in units} == {"sentence"}
    assert all(u["paragraphs"] == 1 and u["text"].count(". ") == 0 for u in units)


@pytest.mark.slow
def test_real_tokenizer_budget(cfg_factory):
    from voicetune.cache import Cache
    from voicetune.chat import chat_token_counter, load_tokenizer

    cfg = cfg_factory(["data=shape_mix"])
    tok = load_tokenizer(cfg.model, Cache(cfg.cache_dir))
    count = chat_token_counter(tok)
    n = count([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
               {"role": "assistant", "content": "yo"}])
    assert 8 <= n <= 20 and tok.eos_token == "<|im_end|>"
    units, _, _ = build_units(cfg, [paper("p", {"methods": [para(60), para(70)]})], count,
                              lambda t: len(tok(t, add_special_tokens=False)["input_ids"]), wants(cfg))
    assert all(u["tokens"] >= u["words"] for u in units)
