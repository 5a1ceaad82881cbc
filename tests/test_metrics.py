"""Eval metrics: exact numbers on hand-written texts."""

import pytest

from voicetune import metrics

ABSTRACT = ("Background: Sleep loss may impair recall. We tested this in adults.\n\n"
            "Design, Setting, and Participants: A trial of 40 adults in two clinics.\n\n"
            "Results: Recall fell by 12% (p < .001).\n\n"
            "Conclusions and Relevance: Sleep matters for memory.")
INLINE_ABSTRACT = ("Objective: To test recall. Methods: We enrolled 40 adults. "
                   "Results: Recall fell by 12%. Conclusions: Sleep matters.")
ACADEMIC = ("We measured recall in 40 adults after one night without sleep. Recall fell by 12%, "
            "which may reflect impaired consolidation. The effect was smaller in older adults.")
AI_STYLE = ("It is important to note that sleep plays a crucial role in memory. Furthermore, "
            "this robust study delves into the multifaceted landscape of recall, paving the way "
            "for a comprehensive understanding. Overall, the findings underscore a pivotal link.")


def filler(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


def test_words_splits_on_whitespace():
    assert metrics.words("one two\n\nthree  four") == 4
    assert metrics.words("") == 0


def test_hedges_per_1k_words_counts_phrases_once():
    text = " ".join(filler(96) + ["it", "may", "tend", "to"])  # 100 words, 2 hedges
    assert metrics.style_signals([text])["hedging_per_1k"] == 20.0


def test_hedges_are_whole_words_and_case_insensitive():
    text = " ".join(["Perhaps", "mayor", "couldron", "SEEMS"] + filler(46))  # 50 words, 2 hedges
    assert metrics.style_signals([text])["hedging_per_1k"] == 40.0


def test_cliches_score_ai_text_above_academic_text():
    ai, academic = metrics.style_signals([AI_STYLE]), metrics.style_signals([ACADEMIC])
    assert academic["cliches_per_1k"] == 0.0
    assert ai["cliches_per_1k"] > 200


def test_cliche_phrase_counts_once_not_per_word():
    text = " ".join(["sleep", "plays", "a", "crucial", "role"] + filler(95))  # 100 words
    assert metrics.style_signals([text])["cliches_per_1k"] == 10.0


def test_contractions_counted_possessives_not():
    text = ("It's clear that we don't know. The author's data and the model's output "
            "aren\u2019t comparable, and its error isn't small.")  # 20 words: 4 contractions, 2 possessives, "its"
    signals = metrics.style_signals([text])
    assert signals["words"] == 20
    assert signals["contractions_per_1k"] == 200.0


def test_mean_sentence_words_is_abbreviation_aware_and_spans_texts():
    texts = ["Smith et al. found an effect (Fig. 2). It was large.", "One more sentence here now."]
    # sentences of 8, 3 and 5 words
    assert metrics.style_signals(texts)["mean_sentence_words"] == 16 / 3


def test_style_signals_of_no_text_are_zero():
    assert metrics.style_signals([]) == {"words": 0, "hedging_per_1k": 0.0, "cliches_per_1k": 0.0,
                                         "contractions_per_1k": 0.0, "mean_sentence_words": 0.0}


def test_style_distance_is_zero_for_same_style_and_canberra_otherwise():
    author = {"hedging_per_1k": 10.0, "cliches_per_1k": 0.0, "contractions_per_1k": 0.0,
              "mean_sentence_words": 20.0}
    model = {"hedging_per_1k": 30.0, "cliches_per_1k": 5.0, "contractions_per_1k": 0.0,
             "mean_sentence_words": 20.0, "words": 500}
    assert metrics.style_distance(author, author) == 0.0
    # terms: 20/40, 5/5, 0/0 -> 0, 0/40 -> mean of 0.5, 1, 0, 0
    assert metrics.style_distance(model, author) == 0.375


def test_ai_style_is_further_from_the_author_than_academic_style():
    author = metrics.style_signals([ACADEMIC])
    near = metrics.style_signals(["We found that recall may fall by 12% in adults without sleep."])
    far = metrics.style_signals([AI_STYLE])
    assert metrics.style_distance(near, author) < metrics.style_distance(far, author)


def test_sample_metrics_of_a_full_rewrite():
    ref = " ".join(filler(10))
    m = metrics.sample_metrics(" ".join(filler(8)), ref, "paragraph", ended=True)
    assert m == {"output_words": 8, "reference_words": 10, "length_ratio": 0.8,
                 "early_stop": False, "runaway": False, "shape_match": True}


def test_one_sentence_and_stop_is_an_early_stop():
    m = metrics.sample_metrics("Sleep matters.", ABSTRACT, "abstract", ended=True)
    assert m["early_stop"] and not m["runaway"] and not m["shape_match"]


def test_runaway_when_no_end_token():
    ref = " ".join(filler(10))
    m = metrics.sample_metrics(" ".join(filler(40)), ref, "paragraph", ended=False)
    assert m["runaway"] and m["length_ratio"] == 4.0 and not m["early_stop"]


def test_empty_output_has_ratio_zero_and_stops_early():
    m = metrics.sample_metrics("", "A reference sentence.", "sentence", ended=True)
    assert m["length_ratio"] == 0 and m["early_stop"] and not m["shape_match"]


def test_ratio_just_under_half_is_an_early_stop():
    ref = " ".join(filler(10))
    assert metrics.sample_metrics(" ".join(filler(4)), ref, "sentence", True)["early_stop"]
    assert not metrics.sample_metrics(" ".join(filler(5)), ref, "sentence", True)["early_stop"]


def test_empty_reference_is_a_bug():
    with pytest.raises(ValueError, match="empty reference"):
        metrics.sample_metrics("text", "  ", "sentence", ended=True)


@pytest.mark.parametrize("shape, output, reference, expected", [
    ("sentence", "One sentence.", "Another sentence.", True),
    ("sentence", "One.\n\nTwo.", "Another sentence.", False),
    ("paragraph", "A.\n\n\n", "B.", True),
    ("paragraph", "A.\n\nB.", "C.", False),
    ("section", "A.\n\nB.\n\nC.", "D.\n\nE.", True),
    ("section", "A.\n\nB.", "C.\n\nD.\n\nE.", True),
    ("section", "A.\n\nB.", "C.\n\nD.\n\nE.\n\nF.", False),
    ("section", "A. B. C.", "D.\n\nE.", False),  # collapsed into one paragraph
])
def test_shape_match_by_paragraph_count(shape, output, reference, expected):
    assert metrics.shape_match(output, reference, shape) is expected


def test_abstract_labels_are_found_generically():
    assert metrics.abstract_labels(ABSTRACT) == [
        "Background", "Design, Setting, and Participants", "Results", "Conclusions and Relevance"]
    assert metrics.abstract_labels(INLINE_ABSTRACT) == ["Objective", "Methods", "Results", "Conclusions"]


def test_a_sentence_with_a_colon_is_not_a_label():
    assert metrics.abstract_labels("The results were clear: recall fell. We note two things: a, b.") == []


def test_a_label_never_spans_lines():
    assert metrics.abstract_labels("Structured Abstract\nBackground: text.") == ["Background"]


def test_abstract_keeping_labels_and_paragraphs_matches():
    rewrite = ABSTRACT.replace("may impair", "impairs").replace("two clinics", "2 clinics")
    assert metrics.shape_match(rewrite, ABSTRACT, "abstract")


def test_abstract_with_a_dropped_label_does_not_match():
    rewrite = ABSTRACT.replace("Results: ", "")
    assert not metrics.shape_match(rewrite, ABSTRACT, "abstract")


def test_abstract_with_changed_paragraph_count_does_not_match():
    rewrite = ABSTRACT.replace("\n\n", " ")
    assert not metrics.shape_match(rewrite, ABSTRACT, "abstract")


def test_one_paragraph_abstract_needs_only_its_labels():
    reflowed = INLINE_ABSTRACT.replace(" Methods:", "\n\nMethods:")
    bolded = INLINE_ABSTRACT.replace("Objective:", "**Objective:**")
    assert metrics.shape_match(reflowed, INLINE_ABSTRACT, "abstract")
    assert metrics.shape_match(bolded, INLINE_ABSTRACT, "abstract")
    assert not metrics.shape_match(INLINE_ABSTRACT.replace("Methods:", "We"), INLINE_ABSTRACT, "abstract")


def test_unlabelled_abstract_matches_on_paragraphs():
    assert metrics.shape_match("Plain text.", "Plain abstract.", "abstract")


def test_unknown_shape_is_an_error():
    with pytest.raises(ValueError, match="shape 'chapter'"):
        metrics.shape_match("a", "b", "chapter")


def _row(shape, ratio, early=False, runaway=False, match=True):
    return {"shape": shape, "length_ratio": ratio, "early_stop": early, "runaway": runaway,
            "shape_match": match}


def test_summarize_quartiles_and_rates():
    rows = [_row("paragraph", 0.2, early=True, match=False), _row("paragraph", 0.9),
            _row("paragraph", 1.0), _row("paragraph", 1.1, runaway=True), _row("paragraph", 3.0),
            _row("abstract", 0.4, early=True, match=False), _row("abstract", 1.2)]
    summary = metrics.summarize(rows)
    para = summary["per_shape"]["paragraph"]
    assert para["n"] == 5
    assert (para["length_ratio_q1"], para["length_ratio_median"], para["length_ratio_q3"]) == (0.9, 1.0, 1.1)
    assert (para["early_stop_rate"], para["runaway_rate"], para["shape_match_rate"]) == (0.2, 0.2, 0.8)
    abstract = summary["per_shape"]["abstract"]
    assert abstract["length_ratio_median"] == pytest.approx(0.8)
    assert abstract["length_ratio_q1"] == pytest.approx(0.6)
    assert abstract["early_stop_rate"] == 0.5
    overall = summary["overall"]
    assert overall["n"] == 7 and overall["length_ratio_median"] == 1.0
    assert overall["early_stop_rate"] == pytest.approx(2 / 7)
    assert overall["shape_match_rate"] == pytest.approx(5 / 7)
    assert list(summary["per_shape"]) == ["abstract", "paragraph"]


def test_summarize_of_nothing_is_none_safe():
    summary = metrics.summarize([])
    assert summary["per_shape"] == {}
    assert summary["overall"] == {"n": 0, "length_ratio_median": None, "length_ratio_q1": None,
                                  "length_ratio_q3": None, "early_stop_rate": None,
                                  "runaway_rate": None, "shape_match_rate": None}


def test_summarize_takes_sample_metrics_rows():
    row = {"shape": "sentence", **metrics.sample_metrics("Short.", "A longer reference here.", "sentence", True)}
    stats = metrics.summarize([row])["overall"]
    assert stats["length_ratio_median"] == stats["length_ratio_q1"] == 0.25
    assert stats["early_stop_rate"] == 1.0


def test_chrf_identical_is_100_and_unrelated_is_low():
    refs = ["Recall fell by 12% after one night without sleep.", "Older adults were less affected."]
    assert metrics.chrf(refs, refs) == 100.0
    assert metrics.chrf(["Quantum flux renormalises eigenvalues.", "Zebra xylophone jazz."], refs) < 20


def test_chrf_edge_cases():
    assert metrics.chrf([], []) == 0.0
    assert metrics.chrf([""], ["A reference."]) == 0.0
    with pytest.raises(ValueError, match="1 outputs but 2 references"):
        metrics.chrf(["a"], ["a", "b"])


def test_import_stays_light():
    import subprocess
    import sys

    code = "import sys, voicetune.metrics; print('sacrebleu' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_style_counts_add_up_to_the_pooled_signals():
    texts = [ACADEMIC, AI_STYLE, "It's short. Isn't it?"]
    pooled = metrics.style_rates(metrics.total([metrics.style_counts(t) for t in texts]))
    assert pooled == pytest.approx(metrics.style_signals(texts))
    assert metrics.style_counts(AI_STYLE)["sentences"] == 3


def test_chrf_of_a_subset_from_summed_stats():
    outputs, refs = ["the cat sat on the mat", "a dog barked"], ["the cat sat on a mat", "the dog barked"]
    stats = metrics.chrf_stats(outputs, refs)
    assert metrics.chrf_from_stats(stats) == pytest.approx(metrics.chrf(outputs, refs))
    assert metrics.chrf_from_stats(stats[:1]) == pytest.approx(metrics.chrf(outputs[:1], refs[:1]))
    assert metrics.chrf_from_stats([stats[0], stats[0]]) == pytest.approx(metrics.chrf(outputs[:1], refs[:1]))
