"""The exported artifacts of the shared end-to-end run: trees, stop tokens, parity on every runtime,
LM Studio install, per-format cache, and `voicetune serve` + `voicetune rewrite` against each other."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import E2E, EXPORT, make_cfg
from voicetune.pipeline import run

pytestmark = pytest.mark.slow
COMMON = {"README.md", "persona.txt", "voicetune.yaml"}


def artifacts(run_dir: Path) -> dict[str, Path]:
    """Each format's folder: built ones from the export's index, the LM Studio install from run.json
    (a delivery to this machine, recorded in the run, not in the cached export)."""
    index = json.loads((run_dir / "export/artifacts.json").read_text())
    found = {fmt: run_dir / "export" / entry["folder"] for fmt, entry in index.items()}
    export = next(s for s in json.loads((run_dir / "run.json").read_text())["stages"] if s["name"] == "export")
    if export["delivered"]:
        found["lmstudio"] = Path(export["delivered"]["lmstudio"])
    return found


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_each_artifact_folder_is_self_contained(e2e_run):
    run_dir, manifest = e2e_run
    found = artifacts(run_dir)
    assert set(found) == {"merged", "gguf", "mlx_q4", "lmstudio"}
    assert names(found["merged"]) == COMMON | {"config.json", "generation_config.json", "model.safetensors",
                                               "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    assert names(found["gguf"]) == COMMON | {"e2e-voice-q8_0.gguf", "e2e-voice-Q4_K_M.gguf", "Modelfile"}
    assert {"model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"} | COMMON <= names(found["mlx_q4"])
    card = (found["gguf"] / "README.md").read_text()
    assert "## Evaluation (held-out papers)" in card and "ollama create e2e-voice" in card
    export = manifest["stages"][-1]
    assert export["metrics"]["formats"] == ["merged", "gguf", "mlx_q4"] and export["delivered"]["from"] == "gguf"


def test_merged_model_lists_every_end_token_and_loads_in_transformers_4_and_5(e2e_run):
    from transformers import AutoTokenizer

    merged = artifacts(e2e_run[0])["merged"]
    tok = AutoTokenizer.from_pretrained(merged)
    gen = json.loads((merged / "generation_config.json").read_text())
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"]
    conf = json.loads((merged / "tokenizer_config.json").read_text())
    assert conf["tokenizer_class"] == "PreTrainedTokenizerFast" and "backend" not in conf
    assert "You are an academic writing assistant" in conf["chat_template"]


def test_modelfile_stops_on_every_end_token_with_the_persona(e2e_run):
    from voicetune.stages.export.gguf import read_modelfile

    gguf = artifacts(e2e_run[0])["gguf"]
    text = (gguf / "Modelfile").read_text()
    assert text.startswith("FROM ./e2e-voice-Q4_K_M.gguf\n")  # the smallest file
    assert 'PARAMETER stop "<|im_end|>"' in text
    template, system = read_modelfile(gguf / "Modelfile")
    assert system == (gguf / "persona.txt").read_text().strip()
    assert template.startswith("<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}")


def test_every_runtime_renders_the_training_prompt_and_nothing_leaks(e2e_run):
    run_dir, _ = e2e_run
    table = json.loads((run_dir / "export/parity.json").read_text())
    runtimes = [r["runtime"] for r in table["rows"]]
    assert runtimes == ["transformers+peft", "transformers", "llama.cpp (e2e-voice-Q4_K_M.gguf)",
                        "llama.cpp (e2e-voice-q8_0.gguf)", "transformers gguf_file=e2e-voice-Q4_K_M.gguf",
                        "ollama Modelfile", "mlx-lm"]
    render_only = ("ollama Modelfile", "transformers gguf_file=e2e-voice-Q4_K_M.gguf")  # llama.cpp generates the GGUF
    for row in table["rows"]:
        assert row["prompt"] == row["default_persona"] == "identical", row
        assert row["conversation"] == ("n/a" if row["runtime"] == "ollama Modelfile" else "identical")
        if row["runtime"] not in render_only:
            assert row["probes"] == 1 and row["leaks"] == [] and row["replies"][0]["finish"] in ("stop", "length")
            assert row["gate"] == "pass", row  # export.parity_min_stop_rate=0: templates and leaks only
        else:
            assert "probes" not in row and row["gate"] == "pass"
    summary = table["summary"]
    assert summary["ok"] is (not summary["failed"]) and not summary["template_mismatches"] and not summary["leaks"]
    assert "| adapter | transformers+peft | identical |" in (run_dir / "export/parity.md").read_text()
    adapter = table["rows"][0]  # the eval stage's tuned replies to the same draft under the same cap
    tuned = {s["id"]: s["outputs"]["tuned"] for s in json.loads((run_dir / "eval/eval.json").read_text())["samples"]}
    reply = adapter["replies"][0]
    assert adapter["replies_from"] == "eval" and reply["text"] == tuned[reply["draft"]]["text"]


def test_lmstudio_folder_holds_the_gguf_and_the_persona(e2e_run):
    target = artifacts(e2e_run[0])["lmstudio"]
    assert target.parts[-2:] == ("voicetune", "e2e-voice")
    assert {"e2e-voice-q8_0.gguf", "e2e-voice-Q4_K_M.gguf", "persona.txt", "README.md"} <= names(target)
    assert (target.parents[2] / "config-presets/e2e-voice.preset.json").is_file()


def test_adding_a_format_rebuilds_only_that_format(e2e_run, e2e_cache, tmp_path):
    run_dir, _ = e2e_run
    cfg = make_cfg(E2E + [o for o in EXPORT if not o.startswith("export=")] +
                   ["export=[merged,gguf]", "export.parity_probes=0", "stages=[export]"], e2e_cache)
    manifest = run(cfg, tmp_path / "again")
    assert manifest["stages"][-1]["status"] == "miss"  # a different format list ...
    index = json.loads((tmp_path / "again/export/artifacts.json").read_text())
    assert {f: e["cached"] for f, e in index.items()} == {"merged": True, "gguf": True}  # ... same artifacts
    first = json.loads((run_dir / "export/artifacts.json").read_text())
    assert index["gguf"]["cache"] == first["gguf"]["cache"]
    assert os.stat(tmp_path / "again/export/gguf/e2e-voice-q8_0.gguf").st_ino == \
        os.stat(artifacts(run_dir)["gguf"] / "e2e-voice-q8_0.gguf").st_ino  # hard links, not copies


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def voicetune(*args, **kw):
    return subprocess.run([sys.executable, "-m", "voicetune.cli", *args], capture_output=True, text=True,
                          timeout=300, **kw)


def test_serve_and_rewrite_work_against_each_other(e2e_run, tmp_path):
    run_dir, _ = e2e_run
    port = free_port()
    log = (tmp_path / "server.log").open("w")  # a file, not a pipe: llama.cpp logs more than a pipe holds
    server = subprocess.Popen([sys.executable, "-m", "voicetune.cli", "serve", str(run_dir), "--port", str(port),
                               "--n-ctx", "4096"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", server, tmp_path / "server.log")
        draft = tmp_path / "draft.txt"
        draft.write_text(held_out_draft(run_dir))
        url = f"http://127.0.0.1:{port}/v1"
        done = voicetune("rewrite", str(draft), "--base-url", url, "--artifact", str(artifacts(run_dir)["gguf"]))
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.split()) > 10 and "<|im_" not in done.stdout
        capped = voicetune("rewrite", "-", "--base-url", url, "--max-tokens", "3", input=draft.read_text())
        assert capped.returncode == 0 and "warning: hit the token cap (3 tokens)" in capped.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    gone = voicetune("rewrite", str(draft), "--base-url", url)
    assert gone.returncode == 2 and gone.stderr.count("\n") == 1 and "nothing answers there" in gone.stderr


def held_out_draft(run_dir: Path) -> str:
    from voicetune.records import draft, read_jsonl

    record = next(r for r in read_jsonl(run_dir / "heldout/heldout.jsonl") if r["shape"] == "paragraph")
    return draft(record)


def wait_for(url: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert server.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server at {url} did not answer in {timeout} s")


def test_merged_tokenizer_loads_in_transformers_4(e2e_run, tmp_path):
    """transformers 5 writes a tokenizer class transformers 4 cannot load: the export fixes it."""
    venv = tmp_path / "tf4"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", "transformers>=4.45,<5", "jinja2"],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"could not install transformers 4 from the package index: {pip.stderr[-300:]}")
    merged = artifacts(e2e_run[0])["merged"]
    code = ("import sys; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "m = [{'role': 'user', 'content': 'draft'}]; print(t.apply_chat_template(m, tokenize=False))")
    done = subprocess.run([str(venv / "bin/python"), "-c", code, str(merged)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("<|im_start|>system\nYou are an academic writing assistant")
