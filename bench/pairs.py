"""Claim: the pairs stage keeps >= 90% of ideal throughput and a kill -9 repeats no request.

Ideal = concurrency / latency: 10 requests in flight x (1 / 0.2 s) = 50 req/s, so 1,000
units (one style) take 20 s at best. The run goes through the real `pairs.run` with the
`local` backend against the test server (tests/openai_server.py) on 127.0.0.1.

    PYTHONPATH=src:tests .venv/bin/python bench/pairs.py            # full, writes results
    PYTHONPATH=src:tests .venv/bin/python bench/pairs.py --quick    # 60 units, no file
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from openai_server import (  # noqa: E402
    KEY_ENV, STYLES, TEST_KEY, FakeOpenAI, local_cfg, run_and_kill, write_units,
)

from voicetune import pairs  # noqa: E402
from voicetune.cache import Cache  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pairs.md"
NOTES = """Notes: the stage's wall time includes ~0.65 s importing openai and ~0.5 s starting the
client and its first connection, over a 20 s ideal. The rest of the gap is CPU on 2 cores
shared by client and server (one process): the 10 requests start together, so their answers
arrive together and are parsed one after another (~4 ms each). The test server disables
Nagle's algorithm; with it on, every answer waited ~40 ms for a delayed ACK (ratio 0.65).
"""


def throughput(fake: FakeOpenAI, work: Path, args: argparse.Namespace) -> dict:
    """One uncached run: requests per second against concurrency / latency."""
    units = write_units(work / "units", args.units)
    cfg = local_cfg(work / "cache-a", fake, concurrency=args.concurrency,
                    styles=STYLES[:1])
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar
        stats = pairs.run(cfg, {"units": units}, work / "out-a")
    ideal = args.concurrency / args.latency
    rate = stats["requests_sent"] / stats["seconds"]
    # Requests phase alone: first request received to last answered, as the server saw it;
    # the stage's wall time also holds ~1.5 s of openai import and client start-up.
    times = [r["time"] for r in fake.requests]
    steady = len(times) / (max(times) - min(times) + args.latency)
    return {"requests": stats["requests_sent"], "seconds": stats["seconds"],
            "req_per_s": round(rate, 1), "ideal_req_per_s": ideal,
            "throughput_ratio": round(rate / ideal, 3),
            "steady_ratio": round(steady / ideal, 3), "pairs": stats["pairs"]}


def kill_and_resume(fake: FakeOpenAI, work: Path, args: argparse.Namespace) -> dict:
    """Kill a run at ~40% (SIGKILL), rerun, and count requests repeated for journaled items."""
    units = work / "units"
    cfg = local_cfg(work / "cache-b", fake, concurrency=args.concurrency, styles=STYLES[:1])
    journal = Cache(cfg.cache_dir).journal(pairs.JOURNAL)
    run_and_kill(cfg, units, work / "out-b", journal, after_lines=int(args.units * 0.4))
    done = set(pairs.Journal(journal).load())
    fake.reset()
    with contextlib.redirect_stderr(io.StringIO()):
        stats = pairs.run(cfg, {"units": units}, work / "out-b")
    keys = {i.request.prompt: i.request.key for i in pairs.plan(cfg, pairs.load_units(units))}
    resent = [keys[r["prompt"]] for r in fake.requests]
    lines = (work / "out-b" / "pairs.jsonl").read_text().splitlines()
    return {"journaled_before_kill": len(done), "resumed_requests": len(resent),
            "repeated_requests": len(done & set(resent)),
            "duplicate_pairs": len(lines) - len(set(lines)), "resume_pairs": stats["pairs"]}


def table(figures: dict, args: argparse.Namespace) -> str:
    """Markdown table of the figures."""
    rows = [
        ("requests (units x 1 style)", f"{figures['requests']:,}"),
        ("latency per request", f"{args.latency * 1000:.0f} ms"),
        ("concurrency", str(args.concurrency)),
        ("wall time", f"{figures['seconds']:.1f} s"),
        ("throughput", f"{figures['req_per_s']} req/s"),
        ("ideal (concurrency / latency)", f"{figures['ideal_req_per_s']:.0f} req/s"),
        ("stage throughput / ideal (goal >= 0.9)", f"{figures['throughput_ratio']:.3f}"),
        ("requests phase / ideal (server's view)", f"{figures['steady_ratio']:.3f}"),
        ("journaled before kill -9", f"{figures['journaled_before_kill']:,}"),
        ("requests sent by the resumed run", f"{figures['resumed_requests']:,}"),
        ("repeated requests (goal 0)", str(figures["repeated_requests"])),
        ("duplicate pairs after resume (goal 0)", str(figures["duplicate_pairs"])),
    ]
    return "\n".join(["| figure | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv: list[str] | None = None) -> dict:
    """Run both measurements, print the table, write results unless --quick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--quick", action="store_true", help="60 units at 50 ms; no file")
    args = parser.parse_args(argv)
    if args.quick:
        args.units, args.latency = 60, 0.05
    os.environ[KEY_ENV] = TEST_KEY
    fake = FakeOpenAI(latency=args.latency).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            figures = throughput(fake, Path(tmp), args)
            figures.update(kill_and_resume(fake, Path(tmp), args))
    finally:
        fake.stop()
    text = table(figures, args)
    print(text)
    if not args.quick:
        write_results(text)
    return figures


def write_results(text: str) -> None:
    """bench/results/pairs.md: date, machine, the table."""
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    RESULTS.write_text(
        f"# pairs bench\n\n`PYTHONPATH=src:tests .venv/bin/python bench/pairs.py`\n\n"
        f"- date: {datetime.date.today().isoformat()}\n- machine: {machine}\n"
        f"- server: tests/openai_server.py (ThreadingHTTPServer on 127.0.0.1), `local` "
        f"backend through the openai client\n\n{text}\n\n{NOTES}")


if __name__ == "__main__":
    main()
