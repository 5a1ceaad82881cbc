"""Quality gates: one test per rejection reason, plus the number extractor."""

import pytest
from omegaconf import OmegaConf

from voicetune import gates
from voicetune.config import GateConfig

ORIGINAL = ("We analysed 1,240 records from 2019 and found an effect of 0.05 (p < .001) [12].\n\n"
            "Accuracy reached 95% while the error rate was 3.2e-4, lower than in earlier work.")
ROUGH = ("It is important to note that we analysed 1,240 records from 2019 and basically found "
         "an effect of 0.05 (p < .001) [12], which plays a crucial role.\n\nFurthermore, "
         "accuracy reached 95% while the error rate was 3.2e-4, lower than in earlier work, "
         "so to speak.")


@pytest.fixture
def cfg():
    return OmegaConf.structured(GateConfig)


def test_good_rough_draft_passes(cfg):
    assert gates.check(ORIGINAL, ROUGH, "stop", cfg) is None


@pytest.mark.parametrize("rough, finish, reason", [
    ("", "stop", "empty"),
    ("   \n", "stop", "empty"),
    (None, "stop", "empty"),
    (ROUGH, "length", "truncated"),
    ("I'm sorry, but I can't help with that.", "stop", "refusal"),
    ("Sure! Here is the rewritten text:\n\n" + ROUGH, "stop", "refusal"),
    ("Here's the rewritten version: " + ROUGH, "stop", "refusal"),
    (ROUGH + " As an AI language model, I kept the numbers.", "stop", "refusal"),
    ("We analysed 1,240 records from 2019.", "stop", "length_ratio"),
    (ROUGH + " " + ROUGH.replace("\n\n", " "), "stop", "length_ratio"),
    (ROUGH.replace("\n\n", " "), "stop", "paragraph_count"),
    (ROUGH.replace("0.05", "a small value"), "stop", "numbers_missing"),
    (ROUGH.replace("[12]", "(Smith)"), "stop", "numbers_missing"),
    (ROUGH.replace("95%", "most"), "stop", "numbers_missing"),
    (ORIGINAL, "stop", "too_similar"),
    (ORIGINAL.replace("analysed", "studied"), "stop", "too_similar"),
])
def test_each_reason(cfg, rough, finish, reason):
    verdict = gates.evaluate(ORIGINAL, rough, finish, cfg)
    assert verdict is not None and verdict.reason == reason
    assert gates.check(ORIGINAL, rough, finish, cfg) == reason
    assert verdict.reason in gates.REASONS


def test_gates_can_be_switched_off(cfg):
    cfg.same_paragraph_count = False
    cfg.keep_numbers = False
    cfg.reject_refusals = False
    assert gates.check(ORIGINAL, ROUGH.replace("\n\n", " ").replace("0.05", "x"), "stop",
                       cfg) is None
    assert gates.check(ORIGINAL, "Sure, " + ROUGH, "stop", cfg) is None


def test_thresholds_come_from_config(cfg):
    cfg.max_length_ratio = 1.1
    assert gates.check(ORIGINAL, ROUGH, "stop", cfg) == "length_ratio"
    cfg.max_length_ratio = 1.6
    cfg.max_similarity = 0.5
    assert gates.check(ORIGINAL, ROUGH, "stop", cfg) == "too_similar"


def test_numbers_are_normalised():
    found = gates.numbers("n = 1,240 (95%, p < .001, r = 0.05, 3.2e-4) in 2019 [3, 4] H2O.")
    assert found == {"1240", "95", ".001", ".05", "3.2e-4", "2019", "[3,4]"}
    assert gates.numbers("n = 1240 (95 %, p < 0.001)") >= {"1240", "95", ".001"}


def test_similarity_bounds():
    assert gates.similarity(ORIGINAL, ORIGINAL) == 1.0
    assert gates.similarity(ORIGINAL, "completely different words here") < 0.2
    assert gates.paragraphs(ORIGINAL) == 2
