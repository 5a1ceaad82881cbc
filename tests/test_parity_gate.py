"""The parity gate on real artifacts: a merged folder and a GGUF of the embedded model, loaded back
by transformers, peft and llama.cpp, on drafts whose token cap is too small to reach the end token."""

import json

import pytest

from conftest import make_cfg
from voicetune.cache import Cache
from voicetune.chat import caps
from voicetune.pipeline import print_run, run_stage
from voicetune.records import chat_messages, write_jsonl

pytestmark = pytest.mark.slow
DRAFT = ("the results shows that the method are faster then the baseline by 12% on all 3 dataset, which we "
         "think is because of the cache, as described in section 4 and also in the appendix.")


def untrained_adapter(cfg, cache, train):
    """A real LoRA adapter of the embedded model, saved as training saves it (LoRA B = 0: the base)."""
    from voicetune.backends import hf
    from voicetune.chat import load_tokenizer
    from voicetune.stages.train import save_adapter

    tok = load_tokenizer(cfg.model, cache)
    save_adapter(cfg, hf.load(cfg, cache, tok).save_pretrained, tok, train)  # into train/adapter
    return tok


def held_out(cfg, folder):
    """Two held-out sentence drafts whose references are two words: a cap of ~3 tokens for a whole rewrite."""
    records = [{"id": f"d{i}", "shape": "sentence",
                "messages": chat_messages(cfg.corpus.persona, cfg.data.instruction, DRAFT + " " * i, "Yes, indeed.")}
               for i in range(2)]
    folder.mkdir(parents=True)
    write_jsonl(folder / "heldout.jsonl", records)
    return records


def test_an_artifact_that_cannot_stop_fails_parity_and_the_run_says_so(e2e_cache, tmp_path, capsys):
    cfg = make_cfg(["export=[merged,gguf]", "export.name=gate", "export.parity_probes=2", "eval.cap_ratio=1",
                    "eval.cap_extra=0"], e2e_cache)
    cache = Cache(cfg.cache_dir)
    tok = untrained_adapter(cfg, cache, tmp_path / "train")
    panel = held_out(cfg, tmp_path / "heldout")
    cap = caps(tok, ["Yes, indeed."], cfg.eval)[0]
    inputs = {"train": tmp_path / "train", "heldout": tmp_path / "heldout", "dataset": tmp_path, "eval": tmp_path}
    metrics = run_stage("export", cfg, inputs, tmp_path / "export", cache)

    table = json.loads((tmp_path / "export/parity.json").read_text())
    generating = [r for r in table["rows"] if "probes" in r]
    assert [r["runtime"] for r in generating] == ["transformers+peft", "transformers", "llama.cpp (gate-q8_0.gguf)"]
    for row in generating:  # identical templates, nothing leaked, and still failed: it never stopped
        assert row["prompt"] == row["default_persona"] == row["conversation"] == "identical" and row["leaks"] == []
        assert (row["stopped"], row["probes"], row["gate"]) == (0, len(panel), "FAILED")
        assert {r["finish"] for r in row["replies"]} == {"length"} and all(r["tokens"] <= cap for r in row["replies"])
    why = "stopped on 0/2 drafts (stop rate 0.00 < export.parity_min_stop_rate 0.5)"
    assert metrics["parity"]["ok"] is False and metrics["parity"]["passed"] == ["gguf (Modelfile)"]
    assert metrics["failed"][1] == f"merged FAILED parity: transformers {why}"
    md = (tmp_path / "export/parity.md").read_text()
    assert "| merged | transformers | identical | identical | identical | 0 | 2 | 0.0 |" in md
    assert f"- **merged FAILED parity: transformers {why}**" in md
    assert (tmp_path / "export/merged/model.safetensors").is_file()  # a failed artifact is kept, marked
    assert (tmp_path / "export/gguf/gate-q8_0.gguf").is_file()

    capsys.readouterr()
    print_run({"stages": [{"name": "export", "status": "miss", "metrics": metrics}]}, tmp_path)
    err = capsys.readouterr().err
    assert err.count("FAILED parity") == 3 and f"export: merged FAILED parity: transformers {why}" in err
