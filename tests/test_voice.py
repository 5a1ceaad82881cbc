"""Voice fidelity measures: the likeness classifier and its refusal, meaning kept, memorization."""

import random

import pytest

from voicetune import voice
from voicetune.config import EvalConfig
from voicetune.intervals import Boot
from voicetune.records import chat_messages

BOOT = Boot(n_boot=500, seed=0)
TOPICS = ["sleep", "recall", "memory", "attention", "reading", "speech", "vision", "learning",
          "sampling", "clustering", "ranking", "indexing", "parsing", "scheduling", "caching", "routing"]
OBJECTS = ["adults", "children", "graphs", "corpora", "patients", "sensors", "images", "networks"]


def author_text(topic: str, obj: str, n: int) -> str:
    """The 'author': terse, hedged, first person plural."""
    return (f"We measured {topic} in {n} {obj}. The effect of {topic} was modest, which suggests "
            f"a limited role for {obj}. We therefore report {topic} per group.")


def draft_text(topic: str, obj: str, n: int) -> str:
    """The 'draft': the same facts, chatty and inflated."""
    return (f"Basically, {topic} was looked at in like {n} {obj}, pretty much. Crucially, the "
            f"{topic} thing was kind of small, so {obj} matter less, more or less. Anyway, {topic} "
            "is shown for each group, you know.")


def record(original: str, rough: str, shape: str = "paragraph") -> dict:
    return {"messages": chat_messages("persona", "Rewrite this.", rough, original), "shape": shape}


def corpus(topics: list[str], make_draft=draft_text) -> list[dict]:
    return [record(author_text(t, o, 10 + i), make_draft(t, o, 10 + i))
            for i, t in enumerate(topics) for o in OBJECTS[:3]]


def test_classifier_tells_the_author_from_drafts_on_unseen_topics():
    judge = voice.judge(corpus(TOPICS[:10]), corpus(TOPICS[10:]), EvalConfig().likeness_min_auc, seed=0)
    assert judge.reason is None and judge.auc == 1.0
    assert judge.card()["trained_on"] == {"author": 30, "drafts": 30}
    author, rough = judge.scores([author_text("hearing", "mice", 7), draft_text("hearing", "mice", 7)])
    assert author > 0.5 > rough


def test_classifier_on_random_labels_is_refused():
    rng = random.Random(0)
    texts = [author_text(rng.choice(TOPICS), rng.choice(OBJECTS), rng.randint(1, 99)) for _ in range(80)]
    # "Author" and "draft" are the same kind of text, labelled at random: nothing to learn.
    records = [record(texts[i], texts[i + 1]) for i in range(0, 80, 2)]
    judge = voice.judge(records[:30], records[30:], EvalConfig().likeness_min_auc, seed=0)
    assert judge.auc < 0.7 and "likeness_min_auc 0.7" in judge.reason
    assert judge.scores(["any text", "another"]) == [None, None]
    assert judge.card()["usable"] is False


def test_no_held_out_passages_is_a_reason_not_a_crash():
    judge = voice.judge(corpus(TOPICS[:3]), [], 0.7, seed=0)
    assert judge.model is None and judge.auc is None and "no author passages" in judge.reason


@pytest.mark.parametrize("out, rough, ref, expected", [
    (0.8, 0.2, 0.8, 1.0),     # reads like the author's own passage
    (0.2, 0.2, 0.8, 0.0),     # still reads like the draft
    (0.5, 0.2, 0.8, 0.5),
    (0.1, 0.2, 0.8, -0.1667),  # moved away from the author
    (0.9, 0.5, 0.55, None),   # reference and draft score alike: no direction to move in
    (None, 0.2, 0.8, None),
])
def test_moved_toward_the_reference(out, rough, ref, expected):
    assert voice.moved(out, rough, ref) == expected


def test_markers_kept_counts_numbers_statistics_and_citations():
    rough = "Recall fell by 12% (p < .001) in 1,240 adults [3, 4], as in 2019."
    kept = "In 1240 adults recall dropped 12 percent (p < .001), as in 2019."
    assert voice.markers_kept(rough, kept) == (5, 4)  # the citation [3,4] is gone
    assert voice.markers_kept(rough, rough) == (5, 5)
    assert voice.markers_kept("No numbers here.", "Nor here.") == (0, 0)


def test_copied_span_is_found_with_its_exact_length():
    train = ["The quick brown fox jumps over the lazy dog near the old river bank today.",
             "Completely different words live in this second training passage."]
    index = voice.CopyIndex(train)
    # 12 words copied (case and punctuation changed), between words the training texts lack.
    output = "Zebras sing: QUICK, brown fox jumps over the lazy dog near the old river! Then purple."
    copied = index.copied(output)
    assert copied["longest_copied_span"] == 12
    assert copied["ngrams"] == 16 - 8 + 1 and copied["copied_ngrams"] == 12 - 8 + 1


def test_a_span_never_joins_two_training_texts():
    index = voice.CopyIndex(["one two three four five", "six seven eight nine ten"])
    assert index.copied("three four five six seven")["longest_copied_span"] == 3
    assert index.copied("nothing copied at all")["longest_copied_span"] == 0


def test_held_out_text_copies_no_8gram():
    index = voice.CopyIndex(TOPICS)
    assert index.copied(author_text("sleep", "adults", 3))["copied_ngrams"] == 0


def summary_rows(likeness: list[float | None], markers: list[tuple[int, int]]) -> list[dict]:
    return [{"shape": "paragraph" if i % 2 else "sentence", "likeness": p, "markers": n, "markers_kept": k,
             "ngrams": 10, "copied_ngrams": i % 2, "longest_copied_span": 3 + i, "words": 100, "hedges": 1,
             "cliches": i, "contractions": 0, "sentences": 5}
            for i, (p, (n, k)) in enumerate(zip(likeness, markers))]


def test_source_summary_reports_shares_over_drafts_with_markers():
    rows = summary_rows([0.2, 0.4, 0.6, 0.8], [(2, 2), (0, 0), (4, 2), (2, 2)])
    summary = voice.source_summary(rows, BOOT)
    assert summary["likeness"]["overall"]["value"] == 0.5
    assert set(summary["likeness"]["per_shape"]) == {"sentence", "paragraph"}
    assert summary["meaning"]["all_kept_rate"] == {"value": 0.6667, "ci": [0.0, 1.0], "n": 3}
    assert summary["meaning"]["markers_kept_share"]["value"] == 0.75  # 6 of 8 markers
    assert summary["memorization"]["copied_8gram_share"]["value"] == 0.05  # 2 of 40 n-grams
    assert summary["memorization"]["longest_copied_span"]["max"] == 6


def test_refused_classifier_leaves_likeness_empty():
    rows = summary_rows([None, None], [(1, 1), (1, 0)])
    assert voice.source_summary(rows, BOOT)["likeness"] is None


def test_paired_difference_has_the_sign_of_the_better_model():
    tuned = summary_rows([0.6, 0.7, 0.8, 0.9], [(2, 2)] * 4)
    base = summary_rows([0.1, 0.3, 0.2, 0.4], [(2, 1)] * 4)
    for rows, rough in ((tuned, 0.1), (base, 0.1)):
        for row in rows:
            row["moved_toward_reference"] = voice.moved(row["likeness"], rough, 0.9)
            row["length_ratio"] = 1.0 if rows is tuned else 1.5
    diff = voice.paired(tuned, base, BOOT)
    assert diff["likeness_mean"]["value"] == 0.5 and diff["likeness_mean"]["ci"][0] > 0
    assert diff["all_kept_rate"]["value"] == 1.0 and diff["markers_kept_share"]["value"] == 0.5
    assert diff["length_ratio_median"]["value"] == -0.5 and diff["length_miss_mean"]["value"] == -0.5
    assert diff["cliches_per_1k"]["value"] == 0.0  # same cliché counts
