"""The eval stage's report without a model: outputs in, eval.json blocks, W&B summary and console out."""

import pytest

from test_voice import OBJECTS, TOPICS, author_text, corpus, draft_text, record
from voicetune import metrics, voice
from voicetune.intervals import Boot
from voicetune.records import draft, reference
from voicetune.stages import eval as eval_stage

BOOT = Boot(n_boot=300, seed=0)


@pytest.fixture(scope="module")
def report():
    """Held-out drafts; 'tuned' writes the author's passage back, 'base' returns the draft."""
    held = [record(author_text(t, o, 20 + i), draft_text(t, o, 20 + i), shape)
            for i, (t, o, shape) in enumerate(zip(TOPICS[10:], OBJECTS, ["paragraph", "sentence"] * 3))]
    train = corpus(TOPICS[:10])
    judge = voice.judge(train, held, 0.7, seed=0)
    copies = voice.CopyIndex(sorted({reference(r) for r in train}))
    author = metrics.style_signals([reference(r) for r in train])
    rows = {"rough": voice.draft_rows([draft(r) for r in held], held, judge, None),
            "reference": voice.draft_rows([reference(r) for r in held], held, judge, copies)}
    out = {"models": {}}
    for name, texts in (("tuned", [reference(r) for r in held]), ("base", [draft(r) for r in held])):
        outputs = [{"text": t, "ended": True} for t in texts]
        out["models"][name], samples = eval_stage.model_report(outputs, held, author, {"eval_loss": 1.0,
                                                               "heldout_loss": 1.1}, BOOT)
        rows[name] = voice.draft_rows(texts, held, judge, copies)
        voice.add_moved(rows[name], rows["rough"], rows["reference"])
        for row, sample in zip(rows[name], samples):
            row.update(length_ratio=sample["length_ratio"], chrf_stats=sample["chrf_stats"])
    out["voice"] = eval_stage._voice(rows, judge, BOOT)
    return out


def test_every_rate_and_median_has_an_interval_beside_it(report):
    tuned = report["models"]["tuned"]
    assert tuned["overall"]["length_ratio_median"] == 1.0 and tuned["overall"]["ci"]["length_ratio_median"] == [1.0, 1.0]
    assert set(tuned["per_shape"]["sentence"]["ci"]) == {"length_ratio_median", "early_stop_rate", "runaway_rate",
                                                        "shape_match_rate"}
    assert tuned["chrf"] == 100.0 and tuned["ci"]["chrf"] == [100.0, 100.0]
    lo, hi = report["models"]["base"]["ci"]["style_distance"]
    assert lo <= report["models"]["base"]["style_distance"] <= hi


def test_voice_block_ranks_the_author_above_the_draft(report):
    texts, paired = report["voice"]["texts"], report["voice"]["paired"]["tuned_minus_base"]
    assert report["voice"]["classifier"]["usable"]
    assert texts["tuned"]["likeness"]["overall"] == texts["reference"]["likeness"]["overall"]
    assert texts["tuned"]["moved_toward_reference_median"]["value"] == 1.0
    assert texts["base"]["moved_toward_reference_median"]["value"] == 0.0
    assert paired["likeness_mean"]["ci"][0] > 0 and paired["chrf"]["value"] > 0
    assert paired["all_kept_rate"] == {"value": 0.0, "ci": [0.0, 0.0], "n": 6}  # both keep every number
    assert set(texts["rough"]) == {"likeness"}


def test_summary_has_lo_and_hi_beside_each_value(report):
    summary = eval_stage._summary({**report, "samples": []})
    assert summary["tuned/chrf"] == 100.0 and summary["tuned/chrf_lo"] == 100.0
    assert summary["voice/tuned/likeness/overall"] == report["voice"]["texts"]["tuned"]["likeness"]["overall"]["value"]
    for key in ("voice/tuned_minus_base/likeness_mean", "voice/base/memorization/copied_8gram_share",
                "base/early_stop_rate"):
        assert {key, f"{key}_lo", f"{key}_hi"} <= set(summary)
    assert summary["voice/reference/memorization/longest_copied_span/max"] >= 0


def test_console_table_shows_intervals_and_the_paired_column(report, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
    eval_stage._print(report)
    out = capsys.readouterr().out
    assert "tuned - base" in out and "author-likeness (mean)" in out and "[1.000, 1.000]" in out
    assert "held-out AUC 1.000" in out


def test_the_tuned_model_runs_merged_on_fp32_and_the_weights_come_back():
    """eval._weights: base = adapter off; tuned on fp32 = adapter merged (same logits), unmerged on exit."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2))
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                            init_lora_weights=False)).eval()  # random B: the adapter moves the logits
    ids = torch.randint(0, 64, (2, 12))

    def logits():
        with torch.no_grad():
            return model(input_ids=ids).logits

    tuned, weights = logits(), {k: v.clone() for k, v in model.state_dict().items()}
    with model.disable_adapter():
        plain = logits()
    assert (tuned - plain).abs().max() > 1e-2
    with eval_stage._weights(model, "tuned"):
        assert any(m.merged for m in model.modules() if hasattr(m, "merged"))
        assert torch.allclose(logits(), tuned, atol=1e-5)
    with eval_stage._weights(model, "base"):
        assert torch.allclose(logits(), plain, atol=1e-6)
    assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))
    assert all(torch.allclose(v, weights[k], atol=1e-6) for k, v in model.state_dict().items())
    model.half()  # half precision: the adapter stays apart
    with eval_stage._weights(model, "tuned"):
        assert not any(m.merged for m in model.modules() if hasattr(m, "merged"))
