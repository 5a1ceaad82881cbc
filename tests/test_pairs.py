"""The pairs stage end to end: offline, and the `local`/`azure` backends against a real server."""

import importlib.util
import json
import math
import shutil
import time
from pathlib import Path

import pytest
from openai_server import (  # noqa: F401  (server is a fixture)
    KEY_ENV, STYLES, TEST_KEY, Fault, local_cfg, make_cfg, run_and_kill, server, write_units,
)

from conftest import ROOT, run_cli
from voicetune import drafting as pairs
from voicetune.pipeline import run_stage
from voicetune.cache import Cache
from voicetune.errors import DryRun, UserError

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, TEST_KEY)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outcomes(out: Path) -> dict[tuple[str, str], str]:
    """(unit, style) -> "pair" or the rejection reason; fails on any duplicate."""
    rows = [(r, "pair") for r in read_jsonl(out / "pairs.jsonl")]
    rows += [(r, r["reason"]) for r in read_jsonl(out / "rejected.jsonl")]
    result = {(r["unit_id"], r["style"]): what for r, what in rows}
    assert len(result) == len(rows), "an item appears twice"
    return result


def journaled_keys(cfg) -> set[str]:
    return set(pairs.Journal(Cache(cfg.cache_dir).journal(pairs.JOURNAL)).load())


def test_offline_run_is_complete_and_deterministic(tmp_path, capsys):
    units = write_units(tmp_path / "units", 20)
    cfg = make_cfg(tmp_path / "cache")
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "a")
    run_stage("pairs", cfg, {"units": units}, tmp_path / "b")
    assert (tmp_path / "a/pairs.jsonl").read_bytes() == (tmp_path / "b/pairs.jsonl").read_bytes()
    rows = read_jsonl(tmp_path / "a/pairs.jsonl")
    assert len(outcomes(tmp_path / "a")) == 60 == stats["calls_planned"]
    assert stats["pairs"] == len(rows) >= 57
    assert [(r["unit_id"], r["style"]) for r in rows] == sorted((r["unit_id"], r["style"])
                                                                 for r in rows)
    assert set(rows[0]) == {"id", "unit_id", "paper", "section", "shape", "style", "rough",
                            "kind", "original", "words_rough", "words_original", "generator"}
    assert rows[0]["generator"] == "offline-depolish-v1"
    assert stats["tokens_estimated"] is True and stats["prompt_tokens"] > 0
    assert json.loads((tmp_path / "a/stats.json").read_text())["pairs"] == stats["pairs"]
    assert "items accepted" in capsys.readouterr().out


def test_faults_end_as_pairs_or_recorded_rejections(tmp_path, server):
    units = write_units(tmp_path / "units", 16)
    server.faults = [
        Fault("429", "Study-u0001", 2), Fault("500", "Study-u0002"), Fault("503", "Study-u0003"),
        Fault("slow", "Study-u0004"), Fault("malformed", "Study-u0005"),
        Fault("no_choices", "Study-u0006"), Fault("refusal", "Study-u0007"),
        Fault("summary", "Study-u0008"), Fault("length", "Study-u0009"),
        Fault("null_content", "Study-u0010"),
    ]
    server.slow_s = 1.5
    cfg = local_cfg(tmp_path / "cache", server, timeout_s=0.5, timeout_retries=1)
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    result = outcomes(tmp_path / "out")
    assert len(result) == 48 == stats["pairs"] + stats["rejected"]
    rejected = {unit: why for (unit, _), why in result.items() if why != "pair"}
    assert rejected == {"u0005": "malformed_response", "u0006": "malformed_response",
                        "u0007": "refusal", "u0008": "length_ratio", "u0009": "truncated",
                        "u0010": "malformed_response"}
    counts = server.counts()
    # 429 x2, 500, 503 and the timeout (timeout_retries=1) were resent and became pairs.
    for unit, extra in (("u0001", 2), ("u0002", 1), ("u0003", 1), ("u0004", 1)):
        assert sum(n for p, n in counts.items() if f"Study-{unit}" in p) == 3 + extra
        assert all(result[(unit, s["name"])] == "pair" for s in STYLES)
    # The client waited the 0.1 s retry-after-ms before each retry of a rate-limited prompt.
    for limited in [p for p, n in counts.items() if "Study-u0001" in p and n > 1]:
        times = [r["time"] for r in server.requests if r["prompt"] == limited]
        assert min(b - a for a, b in zip(times, times[1:])) >= 0.09
    assert stats["requests_sent"] == 48 and stats["tokens_estimated"] is False
    assert stats["resends"] == 5


def test_each_request_asks_for_a_cap_that_follows_its_passage(tmp_path, server):
    units = write_units(tmp_path / "units", 6)
    run_stage("pairs", local_cfg(tmp_path / "cache", server), {"units": units}, tmp_path / "out")
    texts = {u["id"]: u["text"] for u in pairs.load_units(units)}
    caps = {}
    for r in server.requests:
        text = next(t for uid, t in texts.items() if f"Study-{uid}" in r["prompt"])
        caps[len(text.split())] = r["body"]["max_tokens"]
        # 1.6 x the words x 2 tokens a word + 64: the longest reply the length gate keeps, and room.
        assert r["body"]["max_tokens"] == pairs.output_cap(text, 1.6, 4096) == math.ceil(len(text.split()) * 3.2) + 64
    assert len(set(caps.values())) > 1 and max(caps.values()) < 400
    server.reset()
    run_stage("pairs", local_cfg(tmp_path / "cache2", server, max_output_tokens=100), {"units": units}, tmp_path / "o2")
    assert {r["body"]["max_tokens"] for r in server.requests} == {100}


def test_a_timeout_is_not_resent_and_a_rerun_sends_only_it(tmp_path, server):
    units = write_units(tmp_path / "units", 6)
    server.faults, server.slow_s = [Fault("slow", "Study-u0002")], 1.5
    cfg = local_cfg(tmp_path / "cache", server, timeout_s=0.5)
    with pytest.raises(UserError) as error:
        run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    message = str(error.value)
    assert "1 of 18 requests got no reply (1 timed out and were not resent: u0002/" in message
    assert "no reply in 0.5 s" in message and "rerun to send only these" in message and "\n" not in message
    assert max(server.counts().values()) == 1 and len(server.requests) == 18
    assert len(journaled_keys(cfg)) == 17 and not (tmp_path / "out").exists()
    server.reset()
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert len(server.requests) == 1 and "Study-u0002" in server.requests[0]["prompt"]
    assert stats["pairs"] == 18 and stats["served_from_cache"] == 17


def test_a_slow_server_gets_timeouts_from_its_measured_pace(tmp_path, server):
    """5 ms a word: the first reply (~95 words, ~0.5 s) comes within the 0.8 s timeout_s; the last,
    6 x as long (~2.8 s), would not, but by then each request waits 3 x its cap x the pace seen."""
    units = write_units(tmp_path / "units", 4)
    rows = [json.loads(line) for line in (units / "units.jsonl").read_text().splitlines()]
    rows[-1]["text"] = "\n\n".join([rows[-1]["text"]] * 6)
    (units / "units.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    server.token_s = 0.005
    cfg = local_cfg(tmp_path / "cache", server, timeout_s=0.8, concurrency=1, styles=STYLES[:1])
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert time.monotonic() - server.requests[-1]["time"] > 1.5  # the long one, waited for
    assert stats["requests_sent"] == 4 == len(server.requests) and stats["resends"] == 0


def test_a_reply_cut_at_a_smaller_cap_is_resent_when_the_cap_grows(tmp_path, server):
    units = write_units(tmp_path / "units", 4)
    server.faults = [Fault("length", "Study-u0001", 3)]
    cfg = local_cfg(tmp_path / "cache", server)
    run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert outcomes(tmp_path / "out")[("u0001", "ai_generic")] == "truncated"
    server.reset()
    run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert server.requests == []  # the same caps: every journaled reply stands, truncated or not
    wider = local_cfg(tmp_path / "cache", server)
    wider.data.gates.max_length_ratio = 2.0
    run_stage("pairs", wider, {"units": units}, tmp_path / "out")
    assert len(server.requests) == 3 and all("Study-u0001" in r["prompt"] for r in server.requests)
    assert set(outcomes(tmp_path / "out").values()) == {"pair"}


def test_bad_key_stops_after_a_few_requests(tmp_path, server):
    units = write_units(tmp_path / "units", 30)
    server.key = "a-different-key"
    cfg = local_cfg(tmp_path / "cache", server, concurrency=2)
    with pytest.raises(UserError) as error:
        run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    message = str(error.value)
    assert "401" in message and KEY_ENV in message and server.url in message
    assert "\n" not in message and TEST_KEY not in message
    assert len(server.requests) <= 4


def test_unknown_model_stops_with_one_line(tmp_path, server):
    units = write_units(tmp_path / "units", 10)
    server.faults = [Fault("404", None, 1000)]
    with pytest.raises(UserError, match="404.*generator.model='test-model'"):
        run_stage("pairs", local_cfg(tmp_path / "cache", server), {"units": units}, tmp_path / "out")
    assert len(server.requests) <= 4


def test_missing_env_var_names_it(tmp_path, server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    units = write_units(tmp_path / "units", 2)
    with pytest.raises(UserError, match=KEY_ENV):
        run_stage("pairs", local_cfg(tmp_path / "cache", server), {"units": units}, tmp_path / "out")
    assert server.requests == []


def test_more_units_only_request_the_new_ones(tmp_path, server):
    cfg = local_cfg(tmp_path / "cache", server)
    run_stage("pairs", cfg, {"units": write_units(tmp_path / "u5", 5)}, tmp_path / "out5")
    server.reset()
    stats = run_stage("pairs", cfg, {"units": write_units(tmp_path / "u8", 8)}, tmp_path / "out8")
    prompts = [r["prompt"] for r in server.requests]
    assert len(prompts) == 9 == stats["requests_sent"] and stats["served_from_cache"] == 15
    assert all(any(f"Study-u000{i}" in p for i in (5, 6, 7)) for p in prompts)
    assert len(outcomes(tmp_path / "out8")) == 24


def test_torn_journal_line_is_skipped(tmp_path, server):
    units = write_units(tmp_path / "units", 4)
    cfg = local_cfg(tmp_path / "cache", server)
    run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    path = Cache(cfg.cache_dir).journal(pairs.JOURNAL)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])  # as kill -9 leaves it
    server.reset()
    run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert len(server.requests) == 1
    assert len(outcomes(tmp_path / "out")) == 12 and len(journaled_keys(cfg)) == 12


def test_dry_run_sends_nothing_and_prints_estimate(tmp_path, server, capsys):
    units = write_units(tmp_path / "units", 10)
    cfg = local_cfg(tmp_path / "cache", server, dry_run=True, price_input_per_1m=1.0,
                    price_output_per_1m=4.0)
    with pytest.raises(DryRun, match="30 of 30 calls not cached") as info:
        run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert server.requests == [] and "$" in str(info.value)
    assert "calls not cached" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_azure_backend_uses_deployment_path(tmp_path, server):
    units = write_units(tmp_path / "units", 3)
    cfg = local_cfg(tmp_path / "cache", server, backend="azure", base_url=server.root,
                    api_version="2024-10-21", model="my-deployment")
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    assert stats["pairs"] == 9
    assert {r["path"] for r in server.requests} == {
        "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"}


def test_key_is_never_written(tmp_path, server):
    units = write_units(tmp_path / "units", 6)
    server.faults = [Fault("429", "Study-u0001"), Fault("refusal", "Study-u0002")]
    cfg = local_cfg(tmp_path / "cache", server)
    run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4
    assert all(TEST_KEY.encode() not in p.read_bytes() for p in files)


@pytest.mark.slow
def test_kill_9_and_resume_repeats_no_finished_request(tmp_path, server):
    units = write_units(tmp_path / "units", 16)
    cfg = local_cfg(tmp_path / "cache", server)
    server.latency = 0.25  # 48 requests / 4 at a time x 0.25 s = 3 s: time to kill mid-way
    journal = Cache(cfg.cache_dir).journal(pairs.JOURNAL)
    run_and_kill(cfg, units, tmp_path / "out", journal, after_lines=12)
    done = journaled_keys(cfg)
    assert 12 <= len(done) < 48
    server.reset()
    server.latency = 0.0
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    by_prompt = {item.request.prompt: item.request.key
                 for item in pairs.plan(cfg, pairs.load_units(units))}
    resent = [by_prompt[r["prompt"]] for r in server.requests]
    assert not done & set(resent)
    assert len(resent) == 48 - len(done) == stats["requests_sent"]
    assert len(outcomes(tmp_path / "out")) == 48


@pytest.mark.slow
def test_bench_quick_reports_every_figure():
    spec = importlib.util.spec_from_file_location("bench_pairs", BENCH / "pairs.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--quick"])
    assert set(figures) >= {"requests", "seconds", "req_per_s", "ideal_req_per_s",
                            "throughput_ratio", "journaled_before_kill", "resumed_requests",
                            "repeated_requests"}
    assert figures["repeated_requests"] == 0 and figures["requests"] > 0


@pytest.mark.slow  # the units stage loads the model's tokenizer: ~12 s
def test_console_shows_the_stage_not_http_lines_which_go_to_run_log(tmp_path, server):
    papers = tmp_path / "papers"
    papers.mkdir()
    shutil.copy(ROOT / "src/voicetune/demo_corpus/joss_slix.docx", papers)
    done = run_cli(["corpus=dir", f"corpus.path={papers}", "generator=local", f"generator.base_url={server.url}",
                    f"generator.api_key_env={KEY_ENV}", "generator.model=test-model", "stages=[pairs]",
                    f"cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env={KEY_ENV: TEST_KEY})
    assert done.returncode == 0, done.stderr[-2000:]
    console = done.stdout + done.stderr
    assert server.requests and "items accepted" in console and "pairs: 100%" in console
    assert "httpx" not in console and "HTTP Request" not in console and "[INFO]" not in console
    log = next((tmp_path / "outputs").rglob("run.log")).read_text()
    assert log.count("][INFO] - HTTP Request: POST") == len(server.requests)  # httpx's (httpx2 in openai 3)
