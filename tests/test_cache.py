"""The stage cache: content keys, atomic writes, nothing half-written is ever trusted."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from voicetune.cache import Cache, digest


def test_digest_is_stable_and_order_free():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_put_then_get(tmp_path):
    cache = Cache(tmp_path)
    assert cache.get("extract", "k" * 64) is None
    with cache.put("extract", "k" * 64) as out:
        (out / "papers.jsonl").write_text("{}\n")
    hit = cache.get("extract", "k" * 64)
    assert hit is not None and (hit / "papers.jsonl").read_text() == "{}\n"
    assert not list((tmp_path / "tmp").iterdir())


def test_failed_stage_leaves_nothing(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(RuntimeError):
        with cache.put("pairs", "f" * 64) as out:
            (out / "pairs.jsonl").write_text("half")
            raise RuntimeError("boom")
    assert cache.get("pairs", "f" * 64) is None
    assert not list((tmp_path / "tmp").iterdir())


def test_kill_9_mid_write_is_not_trusted(tmp_path):
    script = textwrap.dedent(f"""
        import time
        from voicetune.cache import Cache
        with Cache({str(tmp_path)!r}).put("units", "a" * 64) as out:
            (out / "units.jsonl").write_text("partial")
            print("writing", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert Cache(tmp_path).get("units", "a" * 64) is None
    # A rerun completes normally over the debris.
    with Cache(tmp_path).put("units", "a" * 64) as out:
        (out / "units.jsonl").write_text("full")
    assert (Cache(tmp_path).get("units", "a" * 64) / "units.jsonl").read_text() == "full"


def test_journal_and_models_live_in_the_cache(tmp_path):
    cache = Cache(tmp_path)
    assert cache.journal("pairs-requests").parent.is_dir()
    assert str(cache.models("tok")).startswith(str(tmp_path))


def test_concurrent_miss_waits_for_the_first_computer_then_hits(tmp_path):
    # Two sweep members wanting one entry: the second must not compute it again.
    script = textwrap.dedent(f"""
        import time
        from voicetune.cache import Cache
        cache = Cache({str(tmp_path)!r})
        assert cache.get("extract", "c" * 64) is None
        print("reserved", flush=True)
        time.sleep(1.0)
        with cache.put("extract", "c" * 64) as out:
            (out / "papers.jsonl").write_text("first")
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "reserved"
    started = time.perf_counter()
    hit = Cache(tmp_path).get("extract", "c" * 64)
    assert proc.wait() == 0 and time.perf_counter() - started > 0.5
    assert hit is not None and (hit / "papers.jsonl").read_text() == "first"
