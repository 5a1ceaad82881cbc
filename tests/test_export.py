"""Export pieces without a trained model: format planning, templates, Modelfile, LM Studio install,
bad input, rewrite warnings and artifact lookup. The real artifacts are tested in test_export_e2e."""

import json
from pathlib import Path

import pytest
from jinja2 import Environment
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from conftest import CONF
from voicetune.contract import view
from voicetune.errors import UserError
from voicetune.pipeline import resolve_choices, run_stage
from voicetune.preflight import compose_checked
from voicetune.stages import STAGES, export
from voicetune.stages.export.gguf import ollama_template, read_modelfile, render_ollama
from voicetune.stages.export.lmstudio import install, target_dir
from voicetune.stages.export.merged import persona_template, portable_tokenizer_config
from voicetune.stages.export.parity import (by_shape, compare_renderings, drafts_for, eval_replies, failed_lines, leaks,
                                            markdown, summarize, summary)
from voicetune.rewrite import length_warnings, prompt_for, read_draft
from voicetune.serve import find_artifact

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
PERSONA = 'You write like "the author"; keep every number.\nTwo lines, ünïcode.'


def render(template: str, messages: list[dict]) -> str:
    return Environment().from_string(template).render(messages=messages, add_generation_prompt=True)


def chatml_tokenizer() -> PreTrainedTokenizerFast:
    """A real (tiny, word-level) fast tokenizer with the ChatML template and end token."""
    words = ["<|im_start|>", "<|im_end|>", "[UNK]", "system", "user", "assistant", "draft", "text"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", unk_token="[UNK]")
    fast.chat_template = CHATML
    return fast


def test_persona_template_makes_the_persona_the_default_system_turn():
    template = persona_template(CHATML, PERSONA)
    user = [{"role": "user", "content": "draft"}]
    assert render(template, user) == render(CHATML, [{"role": "system", "content": PERSONA}] + user)
    own = [{"role": "system", "content": "other"}] + user
    assert render(template, own) == render(CHATML, own)  # an explicit system turn wins


def test_ollama_template_reproduces_the_training_prompt():
    tok = chatml_tokenizer()
    template = ollama_template(tok, "<|im_end|>")
    assert template.endswith("{{ .Response }}<|im_end|>")
    msgs = [{"role": "system", "content": PERSONA}, {"role": "user", "content": "the draft"}]
    want = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert render_ollama(template, PERSONA, "the draft") == want


def test_modelfile_round_trips(tmp_path):
    path = tmp_path / "Modelfile"
    path.write_text(f'FROM ./m.gguf\nTEMPLATE """A{{{{ .System }}}}B"""\nPARAMETER stop "x"\nSYSTEM """{PERSONA}"""\n')
    assert read_modelfile(path) == ("A{{ .System }}B", PERSONA)
    path.write_text("FROM ./m.gguf\n")
    with pytest.raises(UserError, match="needs TEMPLATE and SYSTEM"):
        read_modelfile(path)


def test_portable_tokenizer_config(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"tokenizer_class": "TokenizersBackend", "backend": "tokenizers",
                                "is_local": True, "eos_token": "<|im_end|>"}))
    portable_tokenizer_config(path, CHATML)
    conf = json.loads(path.read_text())
    assert conf == {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>", "chat_template": CHATML}


@pytest.mark.parametrize("formats,want", [
    ({"merged": True}, ["merged"]),
    ({"gguf": True}, ["merged", "gguf"]),
    ({"mlx_q4": True, "gguf": True, "merged": True}, ["merged", "gguf", "mlx_q4"]),
    ({"lmstudio": True}, ["merged", "gguf", "lmstudio"]),  # GGUF on Linux
    ({"gguf": False}, []),
])
def test_formats_are_built_in_order_with_what_they_need(cfg_factory, formats, want):
    cfg = cfg_factory(["export=none"])
    cfg.export.formats = formats
    cfg, _ = resolve_choices(cfg, ["export"])  # export.lmstudio.source=auto -> gguf on Linux
    assert export.wanted(cfg) == want


def test_export_options_add_up(cfg_factory):
    cfg = cfg_factory(["export=[gguf,merged]", "export.gguf.quantize=Q4_K_M"])
    assert dict(cfg.export.formats) == {"gguf": True, "merged": True}
    assert cfg.export.gguf.quantize == "Q4_K_M"
    assert dict(cfg_factory([]).export.formats) == {"merged": True, "gguf": True, "mlx_q4": True}


@pytest.mark.parametrize("override,message", [
    ("+export.formats.onnx=true", "export.formats.onnx=True: format must be one of"),
    ("export.gguf.quantize=Q3_K", "export.gguf.quantize: Invalid value 'Q3_K', expected one of [Q4_K_M"),
    ("export.gguf.outtype=q4_0", "export.gguf.outtype: Invalid value 'q4_0', expected one of [f16, bf16, q8_0]"),
    ("export.name=my/model", "export.name='my/model': letters, digits"),
    ("export.mlx.q_bits=5", "export.mlx.q_bits=5: allowed: 2, 3, 4, 6, 8"),
    ("export.parity_min_stop_rate=1.5", "export.parity_min_stop_rate=1.5: a share of drafts, in [0, 1]"),
    ("export.parity_slow_probes=0", "export.parity_slow_probes=0: must be >= 1"),
    ("eval.batch_size=0", "eval.batch_size=0: must be >= 1"),
])
def test_bad_export_options_name_the_key(override, message):
    with pytest.raises(UserError, match=None) as err:
        compose_checked(CONF, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides,bits", [([], 8), (["model=qwen25_05b"], 8), (["model=llama31_8b"], 4),
                                             (["export.mlx.q_bits=4"], 4), (["model.params_b=null"], 4)])
def test_mlx_bits_follow_the_model_size_unless_set(cfg_factory, overrides, bits):
    cfg, chosen = resolve_choices(cfg_factory(overrides), ["export"])
    assert cfg.export.mlx.q_bits == chosen["export.mlx.q_bits"] == bits


def test_export_without_an_adapter_is_one_line(cfg_factory, tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="holds no trained adapter; run the train stage first"):
        run_stage("export", cfg_factory([]), {"train": tmp_path / "train"}, tmp_path / "out")


def export_view(cfg):
    cfg, _ = resolve_choices(cfg, ["export"])
    return view(cfg, STAGES["export"].reads)


def test_a_missing_mlx_is_named_before_any_work(cfg_factory, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlx_lm" else real(name, *a))
    with pytest.raises(UserError, match=r"export format mlx_q4: needs mlx-lm .* export=\[merged,gguf\]"):
        export.check(export_view(cfg_factory(["export=[merged,mlx_q4]"])))
    export.check(export_view(cfg_factory(["export=[merged,gguf]"])))  # nothing missing for these


def fake_artifact(tmp_path, name="gguf"):
    src = tmp_path / "cache" / name
    (src / "sub").mkdir(parents=True, exist_ok=True)
    (src / "m-q8_0.gguf").write_bytes(b"GGUF" + bytes(64))
    (src / "persona.txt").write_text(PERSONA)
    (src / "sub" / "extra.json").write_text("{}")
    (src / "Modelfile").write_text("FROM ./m-q8_0.gguf\n")
    return src


def test_lmstudio_install_is_complete_and_refuses_a_foreign_folder(cfg_factory, tmp_path):
    cfg = cfg_factory([f"export.lmstudio.models_dir={tmp_path}/lms/models", "export.name=jane-voice"])
    target = install(cfg, fake_artifact(tmp_path), "key1")
    assert target == tmp_path / "lms/models/voicetune/jane-voice" == target_dir(cfg)
    files = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert files == {"m-q8_0.gguf", "persona.txt", "sub/extra.json", ".voicetune-install.json"}
    preset = json.loads((tmp_path / "lms/config-presets/jane-voice.preset.json").read_text())
    assert {"key": "llm.prediction.systemPrompt", "value": cfg.corpus.persona} in preset["operation"]["fields"]
    assert install(cfg, fake_artifact(tmp_path), "key1") == target  # the same artifact again: nothing to do
    with pytest.raises(UserError, match="jane-voice exists; remove it or pick another export.name"):
        install(cfg, fake_artifact(tmp_path, "other"), "key2")
    assert [p.name for p in target.parent.iterdir()] == ["jane-voice"]  # no temp folder left
    (target / ".voicetune-install.json").unlink()  # now a folder voicetune did not make ...
    from voicetune.pipeline import run

    cache = tmp_path / "fresh-cache"
    cfg = cfg_factory([f"export.lmstudio.models_dir={tmp_path}/lms/models", "export.name=jane-voice",
                       "export=[gguf,lmstudio]", "stages=[export]", f"cache_dir={cache}"])
    with pytest.raises(UserError, match="jane-voice exists"):
        run(cfg, tmp_path / "run")  # ... refused before any stage of the run computes
    assert not (cache / "stages").exists()


def test_lmstudio_does_not_install_an_artifact_that_failed_parity_unless_asked(cfg_factory, tmp_path, capsys):
    from types import SimpleNamespace

    from voicetune.pipeline import print_run
    from voicetune.stages.export.lmstudio import deliver

    out = tmp_path / "run/export"
    out.mkdir(parents=True)
    (out / "gguf").symlink_to(fake_artifact(tmp_path), target_is_directory=True)
    (out / "artifacts.json").write_text(json.dumps({"gguf": {"key": "k1", "folder": "gguf"}}))
    why = "llama.cpp (m-q8_0.gguf) stopped on 0/4 drafts (stop rate 0.00 < export.parity_min_stop_rate 0.5)"
    parity = {"summary": {"failed": {"gguf (m-q8_0.gguf)": why, "mlx (mlx_q4)": "x"}}}
    (out / "parity.json").write_text(json.dumps(parity))
    args = [f"export.lmstudio.models_dir={tmp_path}/lms/models", "export.name=jane-voice", "export=[gguf,lmstudio]",
            "export.lmstudio.source=gguf"]
    delivered = deliver(SimpleNamespace(cfg=cfg_factory(args), out=out))
    assert delivered["refused"].startswith(f"LM Studio: {out / 'gguf'} not installed, gguf (m-q8_0.gguf) FAILED")
    assert not (tmp_path / "lms/models/voicetune/jane-voice").exists()
    print_run({"stages": [{"name": "export", "status": "miss", "metrics": {}, "delivered": delivered}]}, tmp_path)
    assert "export: LM Studio:" in capsys.readouterr().err
    forced = deliver(SimpleNamespace(cfg=cfg_factory([*args, "export.lmstudio.even_if_failed=true"]), out=out))
    assert Path(forced["lmstudio"]) == tmp_path / "lms/models/voicetune/jane-voice"
    parity["summary"]["failed"].pop("gguf (m-q8_0.gguf)")  # only MLX failed: the GGUF install goes ahead
    (out / "parity.json").write_text(json.dumps(parity))
    assert "lmstudio" in deliver(SimpleNamespace(cfg=cfg_factory(args), out=out))


def fake_adapter(tmp_path):
    train = tmp_path / "train"
    (train / "adapter").mkdir(parents=True)
    (train / "adapter/adapter_config.json").write_text("{}")
    return train


def test_parity_summary_fails_on_mismatch_or_leak():
    ok = {"runtime": "a", "artifact": "x", "prompt": "identical", "default_persona": "identical", "conversation": "n/a",
          "leaks": []}
    bad = {"runtime": "b", "artifact": "y", "prompt": "MISMATCH at token 3 (9 vs 10 ids)", "leaks": ["<|im_end|>"]}
    assert summary([ok], 0.5)["ok"] and not summary([ok, bad], 0.5)["ok"]
    assert summary([ok, bad], 0.5)["template_mismatches"] == ["b:prompt"] and summary([ok, bad], 0.5)["leaks"] == ["b"]
    assert leaks("fine text", ["<|im_end|>"]) == []
    assert leaks("text<|im_end|>\nuser\nmore", ["<|im_end|>"]) == ["<|im_end|>", "role header"]


def test_parity_fails_an_artifact_that_does_not_stop_and_keeps_the_others():
    def row(runtime, artifact, stopped, probes=4):
        return {"runtime": runtime, "artifact": artifact, "prompt": "identical", "default_persona": "identical",
                "conversation": "identical", "leaks": [], "stopped": stopped, "probes": probes,
                "stop_rate": stopped / probes}

    rows = [row("transformers", "merged", 4), row("llama.cpp (q8_0.gguf)", "gguf (q8_0.gguf)", 2),
            row("transformers gguf_file=q8_0.gguf", "gguf (q8_0.gguf)", 1), row("mlx-lm", "mlx (mlx_q4)", 0),
            {"runtime": "ollama Modelfile", "artifact": "gguf (Modelfile)", "prompt": "identical"}]
    result = summary(rows, 0.5)
    assert not result["ok"] and result["passed"] == ["merged", "gguf (Modelfile)"]
    assert result["failed"] == {
        "gguf (q8_0.gguf)": "transformers gguf_file=q8_0.gguf stopped on 1/4 drafts (stop rate 0.25 "
                            "< export.parity_min_stop_rate 0.5)",
        "mlx (mlx_q4)": "mlx-lm stopped on 0/4 drafts (stop rate 0.00 < export.parity_min_stop_rate 0.5)"}
    assert [r["gate"] for r in rows] == ["pass", "pass", "FAILED", "FAILED", "pass"]
    assert failed_lines(result)[1] == "mlx (mlx_q4) FAILED parity: " + result["failed"]["mlx (mlx_q4)"]
    assert summary(rows, 0.0)["ok"]  # 0 checks templates and leaks only
    table = markdown(rows, result)
    assert "| mlx (mlx_q4) | mlx-lm | identical | identical | identical | 0 | 4 | 0.0 |" in table
    assert "- **mlx (mlx_q4) FAILED parity: mlx-lm stopped on 0/4 drafts" in table


def test_the_run_summary_names_each_failed_artifact_in_one_line(tmp_path, capsys):
    from voicetune.pipeline import print_run

    line = "mlx (mlx_q4) FAILED parity: mlx-lm stopped on 0/4 drafts (stop rate 0.00 < export.parity_min_stop_rate 0.5)"
    manifest = {"stages": [{"name": "train", "status": "hit", "metrics": {}},
                           {"name": "export", "status": "miss", "metrics": {"failed": [line]}}]}
    print_run(manifest, tmp_path)
    err = capsys.readouterr().err
    assert f"export: {line}" in err and err.count("FAILED") == 1


def test_rendering_comparison_reports_where_ids_differ():
    class Runtime:
        def render(self, msgs):
            return [1, 2, 3] if len(msgs) == 2 else ([1, 2, 9, 9] if len(msgs) == 1 else None)

    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]
    got = compare_renderings(Runtime(), msgs, {"prompt": [1, 2, 3], "default_persona": [1, 2, 3], "conversation": [0]})
    assert got == {"prompt": "identical", "default_persona": "MISMATCH at token 2 (4 vs 3 ids)", "conversation": "n/a"}


def test_parity_drafts_take_the_short_shapes_in_turn_first():
    shapes = ["section", "paragraph", "paragraph", "abstract", "sentence", "sentence", "sentence", "section"]
    drafts = [{"shape": s, "id": i} for i, s in enumerate(shapes)]
    assert [(d["shape"], d["id"]) for d in by_shape(drafts)] == [
        ("sentence", 4), ("paragraph", 1), ("sentence", 5), ("paragraph", 2), ("sentence", 6),
        ("abstract", 3), ("section", 0), ("section", 7)]


def test_rewrite_warns_on_cap_and_early_stop():
    assert "hit the token cap (50 tokens)" in length_warnings("length", 40, 40, 50)[0]
    assert "stopped early: 10 words for a 40-word draft (25%)" in length_warnings("stop", 10, 40, 90)[0]
    assert length_warnings("stop", 38, 40, 90) == []


def test_rewrite_reads_prompt_and_draft(tmp_path, cfg_factory):
    from omegaconf import OmegaConf

    cfg = cfg_factory(["corpus.persona='Jane voice.'"])
    (tmp_path / "voicetune.yaml").write_text(OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, ["corpus", "data"])))
    assert prompt_for(tmp_path).persona == "Jane voice."
    assert prompt_for(None).instruction.startswith("Rewrite this draft")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UserError, match="empty.txt: the draft is empty"):
        read_draft(str(tmp_path / "empty.txt"))
    with pytest.raises(UserError, match="nope.txt: no such file"):
        read_draft(str(tmp_path / "nope.txt"))


def test_serve_finds_the_artifact_from_a_run_dir(tmp_path):
    gguf = fake_artifact(tmp_path)
    (gguf / "m-Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "run/export").mkdir(parents=True)
    (tmp_path / "run/export/artifacts.json").write_text(json.dumps({"gguf": {"folder": "gguf"}}))
    (tmp_path / "run/export/gguf").symlink_to(gguf)
    assert find_artifact(tmp_path / "run") == tmp_path / "run/export/gguf/m-Q4_K_M.gguf"  # the smallest file
    assert find_artifact(gguf / "m-q8_0.gguf") == gguf / "m-q8_0.gguf"
    with pytest.raises(UserError, match="holds no .gguf file or MLX model"):
        find_artifact(tmp_path / "cache")


def test_compute_modal_exports_remotely_and_installs_lm_studio_here(cfg_factory, tmp_path, monkeypatch):
    """Modal's cloud cannot exist here: stand in for run_remote's copy-back, check what it was given."""
    from voicetune.cache import Cache
    from voicetune.compute import modal as remote
    from voicetune.contract import Context, Services
    from voicetune.pipeline import placement, run_placed
    from voicetune.stages.export.lmstudio import deliver

    asked = {}

    def fake_run_remote(spec, ctx, compute, tracking):
        asked.update(stage=spec.name, function=spec.function, formats=dict(ctx.cfg.export.formats),
                     target=str(compute.target), sees_compute="compute" in ctx.cfg)
        src = fake_artifact(tmp_path)
        (ctx.out / "gguf").mkdir(parents=True)
        for p in src.iterdir():
            if p.is_file():
                (ctx.out / "gguf" / p.name).write_bytes(p.read_bytes())  # what copy_back leaves in `out`
        (ctx.out / "artifacts.json").write_text(json.dumps({"merged": {"folder": "merged", "key": "m"},
                                                            "gguf": {"folder": "gguf", "key": "g"}}))
        return {"formats": ["merged", "gguf"], "remote": {"gpu": "A100-40GB"}}

    monkeypatch.setattr(remote, "run_remote", fake_run_remote)
    cfg = cfg_factory(["compute=modal", "export=[gguf,lmstudio]", f"export.lmstudio.models_dir={tmp_path}/lms",
                       "export.name=jane-voice"])
    cfg, _ = resolve_choices(cfg, ["train", "export"])
    assert placement(cfg, "export") == "modal" and placement(cfg, "eval") == "modal"  # compute.stages: all three
    spec, out = STAGES["export"], tmp_path / "out"
    out.mkdir()
    services = Services(Cache(cfg.cache_dir))
    metrics = run_placed(spec, Context(view(cfg, spec.reads), {"train": fake_adapter(tmp_path)}, out, services),
                         cfg, "modal")
    assert asked == {"stage": "export", "function": "voicetune.stages.export:run",
                     "formats": {"gguf": True, "lmstudio": True}, "target": "modal", "sees_compute": False}
    assert metrics["remote"]["gpu"] == "A100-40GB"
    # The delivery runs here, from what came back.
    delivered = deliver(Context(view(cfg, spec.deliver_reads), {}, out, services))
    assert delivered == {"lmstudio": str(tmp_path / "lms/voicetune/jane-voice"), "from": "gguf"}
    assert (tmp_path / "lms/voicetune/jane-voice/m-q8_0.gguf").is_file()


def test_a_slow_runtime_generates_the_drafts_with_the_smallest_caps_and_parity_md_says_so(cfg_factory):
    class Runtime:
        def __init__(self, slow):
            self.slow = slow

    export_cfg = cfg_factory([]).export
    limits = [90, 300, 60, 250]  # sentence, paragraph, sentence, paragraph: by_shape's order
    assert drafts_for(Runtime(False), limits, export_cfg) == [0, 1, 2, 3]
    assert drafts_for(Runtime(True), limits, export_cfg) == [0, 2]  # the two sentences, in panel order
    assert drafts_for(Runtime(True), limits[:2], export_cfg) == [0, 1]  # a panel no bigger: all of it
    assert drafts_for(Runtime(True), limits, cfg_factory(["export.parity_slow_probes=3"]).export) == [0, 2, 3]
    row = {"runtime": "mlx-lm", "artifact": "mlx (mlx_q4)", "prompt": "identical", "default_persona": "identical",
           "conversation": "identical", "leaks": [], "stopped": 1, "probes": 2, "stop_rate": 0.5, "of_panel": 4}
    table = markdown([row], summary([row], 0.5))
    assert "| mlx (mlx_q4) | mlx-lm | identical | identical | identical | 1 | 2 | 0.5 |" in table
    assert "mlx-lm generated 2 of the 4 drafts, those with the smallest caps: mlx[cpu] without Metal" in table


def test_the_adapter_row_reuses_the_eval_stages_replies_only_under_the_same_caps(tmp_path):
    panel = [{"id": "a", "shape": "sentence"}, {"id": "b", "shape": "paragraph"}]
    outputs = {"a": {"text": "One.", "raw": "One.", "ended": True, "tokens": 3, "cap": 40},
               "b": {"text": "Two <|im_end|>", "raw": "Two <|im_end|>", "ended": False, "tokens": 90, "cap": 90}}
    samples = [{"id": i, "outputs": {"tuned": o, "base": {}}} for i, o in outputs.items()]
    (tmp_path / "eval.json").write_text(json.dumps({"samples": samples}))
    replies = eval_replies({"eval": tmp_path}, panel, [40, 90])
    assert [(r["finish"], r["tokens"]) for r in replies] == [("stop", 3), ("length", 90)]
    row = summarize(replies, ["One.", "Two."], ["<|im_end|>"])
    assert (row["stopped"], row["probes"], row["tokens_per_s"], row["leaks"]) == (1, 2, None, ["<|im_end|>"])
    assert eval_replies({"eval": tmp_path}, panel, [40, 91]) is None  # another cap: generate again
    assert eval_replies({"eval": tmp_path}, panel + [{"id": "c", "shape": "section"}], [40, 90, 300]) is None
    assert eval_replies({"eval": tmp_path / "none"}, panel, [40, 90]) is None
