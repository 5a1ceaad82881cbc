"""dataset stage: ChatML records, paper-level split, weights, dedup, card, DatasetDict."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from voicetune.cache import Cache
from voicetune.config import Config
from voicetune.contract import Context, Services, view
from voicetune.errors import UserError
from voicetune.records import section_weight, write_split
from voicetune.stages import STAGES, dataset
from voicetune.stages.split import valid_papers

PERSONA = "You are the author. Rewrite in the author's voice."
INSTRUCTION = "Rewrite this draft in my published style."
# Replaces the schema's map (a plain merge would keep its other keys).
WEIGHTS = {"abstract": 2.0, "introduction": 1.0, "methods": 1.0, "results": 1.5,
           "conclusion": 0.5, "unknown": 0.25}
VOCAB = ("model data voice sample paper method result effect cohort signal analysis measure "
         "estimate variance bias error trial score rate group dose outcome study factor level "
         "network cluster index series kernel weight prior robust sparse latent linear").split()
SHAPE_WORDS = {"sentence": 20, "paragraph": 60, "section": 150, "abstract": 110}
SECTIONS = ("abstract", "introduction", "methods", "results", "discussion", "conclusion", "body")


def words(rng: random.Random, n: int) -> str:
    """n random vocabulary words with a full stop every ~12 words."""
    out = [rng.choice(VOCAB) + ("." if i % 12 == 11 else "") for i in range(n)]
    return " ".join(out).capitalize() + "."


def make_pairs(n_papers: int = 6, units_per_paper: int = 4, seed: int = 0) -> list[dict]:
    """Pairs for n papers, two rough styles per unit, every shape and several sections."""
    rng = random.Random(seed)
    shapes = list(SHAPE_WORDS)
    sections = itertools.cycle(SECTIONS[1:])
    pairs = []
    for p in range(n_papers):
        for u in range(units_per_paper):
            shape = shapes[(p + u) % len(shapes)]
            section = "abstract" if shape == "abstract" else next(sections)
            original = words(rng, SHAPE_WORDS[shape])
            unit_id = f"paper{p}-u{u}"
            for style in ("ai_generic", "loose_draft"):
                pairs.append(pair(unit_id, f"paper{p}", section, shape, style, original))
    return pairs


def pair(unit_id, paper, section, shape, style, original, rough=None) -> dict:
    """One pairs.jsonl row."""
    rough = rough or f"[{style}] " + original.lower()
    return {"id": f"{unit_id}-{style}", "unit_id": unit_id, "paper": paper, "section": section,
            "shape": shape, "style": style, "kind": "depolish", "rough": rough, "original": original,
            "words_rough": len(rough.split()), "words_original": len(original.split()),
            "generator": "offline-depolish-v1"}


REJECTED = [
    {"unit_id": "paper0-u9", "paper": "paper0", "section": "results", "shape": "paragraph",
     "style": "ai_generic", "reason": "numbers_changed", "detail": "lost 0.05",
     "rough": "The effect was <b>significant</b> & big."},
    {"unit_id": "paper1-u9", "paper": "paper1", "section": "methods", "shape": "sentence",
     "style": "loose_draft", "reason": "too_short", "detail": "ratio 0.41", "rough": "short."},
]
STATS = {"cost_usd": 0.0123, "prompt_tokens": 4567, "completion_tokens": 3456,
         "rejected_by_reason": {"numbers_changed": 1, "too_short": 1}}


def write_pairs_dir(folder: Path, pairs: list[dict], rejected=REJECTED, stats=STATS) -> Path:
    """A pairs-stage output folder: pairs.jsonl, rejected.jsonl, stats.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pairs.jsonl", pairs), ("rejected.jsonl", rejected)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "stats.json").write_text(json.dumps(stats))
    return folder


def make_cfg(tmp_path: Path, **data):
    """The typed config with just what the dataset stage reads."""
    data = {"name": "test", "prompt": "p", "instruction": INSTRUCTION, "section_weights": WEIGHTS,
            "rough_styles": [{"name": "ai_generic", "instruction": "x"},
                             {"name": "loose_draft", "instruction": "y"},
                             {"name": "verbose_coauthor", "instruction": "z"}],
            "valid_fraction": 0.2, "seed": 0, **data}
    cfg = OmegaConf.merge(OmegaConf.structured(Config), {
        "corpus": {"path": str(tmp_path), "persona": PERSONA}, "data": data,
        "model": {"name": "test", "name_or_path": "none"}, "cache_dir": str(tmp_path / "cache"),
    })
    cfg.data.section_weights = data["section_weights"]
    return cfg


def word_count(messages: list[dict]) -> int:
    """Stand-in for the chat-template token count."""
    return sum(len(m["content"].split()) + 4 for m in messages)


class WordTokenizer:
    """Stands in for the model's tokenizer: word_count tokens per conversation."""

    def apply_chat_template(self, messages, tokenize=True, **kwargs):
        return [0] * word_count(messages)


class WordServices(Services):
    def tokenizer(self, model_cfg):
        return WordTokenizer()


def split_dir(tmp_path: Path, pairs: list[dict], cfg) -> Path:
    """The split stage's output for the papers of these pairs."""
    folder = tmp_path / "split"
    folder.mkdir(parents=True, exist_ok=True)
    papers = sorted({p["paper"] for p in pairs})
    valid = valid_papers(papers, cfg.data.valid_fraction, cfg.data.seed)
    write_split(folder, {"train": [p for p in papers if p not in valid], "valid": sorted(valid)})
    return folder


def run_dataset(cfg, inputs: dict, out: Path) -> dict:
    """The stage through its declared view, as the pipeline runs it."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(view(cfg, STAGES["dataset"].reads), inputs, out, WordServices(Cache(cfg.cache_dir)))
    return dataset.run(ctx)


def build(tmp_path: Path, pairs: list[dict] | None = None, **data) -> tuple[dict, Path]:
    """Run the stage on fixture pairs; return (summary, out)."""
    pairs = make_pairs() if pairs is None else pairs
    src = write_pairs_dir(tmp_path / "pairs", pairs)
    cfg = make_cfg(tmp_path, **data)
    out = tmp_path / "dataset"
    summary = run_dataset(cfg, {"pairs": src, "split": split_dir(tmp_path, pairs, cfg)}, out)
    return summary, out


def read_split(out: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("built")
    summary, out = build(tmp)
    return summary, out, read_split(out, "train") + read_split(out, "valid")


def test_records_are_chatml_with_fixed_persona_and_verbatim_original(built):
    _, out, records = built
    originals = {p["id"]: p for p in make_pairs()}
    assert len(records) == len(originals)
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][0]["content"] == PERSONA
        src = originals[r["id"]]
        assert r["messages"][1]["content"] == INSTRUCTION + "\n\n" + src["rough"]
        assert r["messages"][2]["content"] == src["original"]
        assert r["tokens"] == word_count(r["messages"])
        assert set(r) == {"messages", "id", "paper", "section", "shape", "style", "kind", "weight", "tokens"}


def test_split_is_by_paper_with_summary(built):
    summary, out, _ = built
    train, valid = read_split(out, "train"), read_split(out, "valid")
    train_papers, valid_papers = {r["paper"] for r in train}, {r["paper"] for r in valid}
    assert not train_papers & valid_papers
    # 6 papers x 0.2 = 1.2 -> 1 valid paper.
    assert (len(train_papers), len(valid_papers)) == (5, 1)
    assert summary == {"train": len(train), "valid": len(valid), "papers_train": 5,
                       "papers_valid": 1, "dedup_removed": 0, "rejected": 2}


def test_same_seed_same_split_and_seeds_differ():
    papers = [f"paper{i}" for i in range(10)]
    assert valid_papers(papers, 0.2, 7) == valid_papers(papers, 0.2, 7)
    splits = {frozenset(valid_papers(papers, 0.2, seed)) for seed in range(10)}
    assert len(splits) > 1
    assert all(len(s) == 2 for s in splits)


def test_split_of_a_paper_does_not_depend_on_the_others_order():
    # The split ranks papers by a seeded hash of their own id: listing order changes nothing.
    for seed in range(5):
        assert valid_papers(list("abcdefg"), 0.3, seed) == valid_papers(list("gfedcba"), 0.3, seed)


def test_two_papers_put_one_on_each_side_even_with_large_fraction():
    assert len(valid_papers(["a", "b"], 0.9, 0)) == 1


def test_weights_per_section_from_config(built):
    _, _, records = built
    for r in records:
        expected = WEIGHTS.get(r["section"], WEIGHTS["unknown"])
        assert r["weight"] == expected
    # "discussion" and "body" are not in the map: they get the "unknown" weight.
    assert {r["section"] for r in records} >= {"abstract", "conclusion", "discussion", "body"}
    assert {r["weight"] for r in records} == {2.0, 1.0, 1.5, 0.5, 0.25}
    assert section_weight("body", WEIGHTS) == 0.25
    assert section_weight("abstract", {"abstract": 3.0, "unknown": 0.1}) == 3.0


def test_dedup_removes_exact_and_near_duplicates_but_keeps_style_variants(tmp_path):
    rng = random.Random(3)
    base = words(rng, 100)
    near = base.replace(base.split()[50], "zebra", 1)
    pairs = make_pairs(n_papers=3, units_per_paper=2)
    pairs += [pair("paper0-orig", "paper0", "results", "paragraph", s, base) for s in ("a", "b")]
    # Same text, other case and spacing, other paper and shape: an exact duplicate.
    pairs.append(pair("paper1-exact", "paper1", "methods", "section", "a", "  " + base.upper()))
    pairs.append(pair("paper2-near", "paper2", "results", "paragraph", "a", near))
    pairs.append(pair("paper0-orig", "paper0", "results", "paragraph", "a", base))  # repeated row
    summary, out = build(tmp_path, pairs)
    card = json.loads((out / "card.json").read_text())
    removed = {(r["unit_id"], r["reason"], r["duplicate_of"]) for r in card["dedup"]["items"]}
    assert removed == {("paper1-exact", "exact", "paper0-orig"),
                       ("paper2-near", "near", "paper0-orig"),
                       ("paper0-orig", "repeat", "paper0-orig")}
    assert summary["dedup_removed"] == 3 == card["dedup"]["removed"]
    ids = [r["id"] for r in read_split(out, "train") + read_split(out, "valid")]
    assert sorted(ids).count("paper0-orig-a") == 1 and "paper0-orig-b" in ids


def test_near_duplicate_needs_same_shape():
    rng = random.Random(4)
    base = words(rng, 100)
    near = base.replace(base.split()[50], "zebra", 1)
    pairs = [pair("u1", "a", "results", "paragraph", "s", base),
             pair("u2", "b", "results", "section", "s", near)]
    kept, removed = dataset.dedup(pairs)
    assert (len(kept), removed) == (2, [])


def test_card_counts_match_records(built):
    _, out, records = built
    card = json.loads((out / "card.json").read_text())
    train, valid = read_split(out, "train"), read_split(out, "valid")
    assert card["counts"]["split"] == {"train": len(train), "valid": len(valid)}
    for facet in ("shape", "section", "style"):
        for name, total in card["counts"][facet].items():
            assert total == sum(r[facet] == name for r in records)
            per = card["counts"][f"{facet}_by_split"][name]
            assert per["valid"] == sum(r[facet] == name for r in valid)
    # A configured style with no pairs still shows, as 0.
    assert card["counts"]["style"]["verbose_coauthor"] == 0
    assert card["papers"]["valid"] == sorted({r["paper"] for r in valid})
    tokens = sorted(r["tokens"] for r in records)
    assert (card["tokens"]["min"], card["tokens"]["max"]) == (tokens[0], tokens[-1])
    hist = card["tokens"]["histogram"]
    assert (sum(hist["train"]), sum(hist["valid"])) == (len(train), len(valid))
    assert card["rejected"] == {"total": 2, "by_reason": {"numbers_changed": 1, "too_short": 1}}
    assert card["generation"] == {"cost_usd": 0.0123, "prompt_tokens": 4567,
                                  "completion_tokens": 3456}
    md = (out / "card.md").read_text()
    assert f"{len(train)} train / {len(valid)} valid" in md and "numbers_changed" in md


def test_histogram_is_a_valid_png(built):
    _, out, _ = built
    blob = (out / "token_hist.png").read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 2000
    from matplotlib.image import imread

    assert imread(out / "token_hist.png").shape[:2] == (350, 700)


def test_dataset_dict_loads_back(built):
    from datasets import load_from_disk

    _, out, _ = built
    dd = load_from_disk(str(out / "hf"))
    assert set(dd) == {"train", "valid"}
    for split in ("train", "valid"):
        rows = read_split(out, split)
        assert dd[split].num_rows == len(rows)
        assert dd[split][0]["messages"] == rows[0]["messages"]


def test_one_paper_corpus_is_a_one_line_user_error(tmp_path):
    from voicetune.pipeline import run_stage

    extract = tmp_path / "extract"
    extract.mkdir()
    (extract / "papers.jsonl").write_text(json.dumps({"id": "only", "sections": []}) + "\n")
    with pytest.raises(UserError) as err:
        run_stage("split", make_cfg(tmp_path), {"extract": extract}, tmp_path / "split")
    assert "at least 2 papers" in str(err.value) and "\n" not in str(err.value)


def test_valid_papers_without_pairs_is_a_one_line_user_error(tmp_path):
    # The held-out paper lost every pair (gates, dedup): the split stays, and the run says so.
    pairs = make_pairs()
    cfg = make_cfg(tmp_path)
    split = split_dir(tmp_path, pairs, cfg)
    held_out = json.loads((split / "split.json").read_text())["valid"]
    src = write_pairs_dir(tmp_path / "pairs", [p for p in pairs if p["paper"] not in held_out])
    with pytest.raises(UserError) as err:
        run_dataset(cfg, {"pairs": src, "split": split}, tmp_path / "o")
    assert str(err.value).startswith("dataset: no valid pairs left") and held_out[0] in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_pairs_input_names_the_file(tmp_path):
    src = tmp_path / "pairs"
    src.mkdir()
    cfg = make_cfg(tmp_path)
    split = split_dir(tmp_path, make_pairs(), cfg)
    with pytest.raises(UserError, match="pairs.jsonl: not found"):
        run_dataset(cfg, {"pairs": src, "split": split}, tmp_path / "o")
    (src / "pairs.jsonl").write_text(json.dumps(make_pairs()[0]) + "\n{oops\n")
    with pytest.raises(UserError, match=r"pairs.jsonl:2: not valid JSON"):
        run_dataset(cfg, {"pairs": src, "split": split}, tmp_path / "o")


@pytest.mark.slow
def test_tokens_use_the_model_chat_template(cfg_factory):
    from voicetune.chat import load_tokenizer
    from voicetune.config import smollm2_dir

    try:
        smollm2_dir()
    except UserError as exc:
        pytest.skip(str(exc))
    from voicetune.chat import chat_token_counter

    cfg = cfg_factory()  # the default model: SmolLM2 from its GGUF, ChatML template
    count = chat_token_counter(load_tokenizer(cfg.model, Cache(cfg.cache_dir)))
    messages = [{"role": "system", "content": PERSONA}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello there."}]
    tok = load_tokenizer(cfg.model, Cache(cfg.cache_dir))
    content_only = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"])
                       for m in messages)
    # ChatML wraps each of the 3 turns in <|im_start|>role\n ... <|im_end|>\n (>= 3 tokens).
    assert count(messages) >= content_only + 3 * 3
