"""The pairs stage against llama.cpp's own OpenAI-compatible server, as `generator=local` meets it.

Measured before per-passage caps and timeouts from the server's pace: replies ran on to ~4,000
tokens (every request asked for 4,096), took 67-94 s, passed the 60 s timeout and were resent up
to 4 times while the server still generated the abandoned ones.
"""

import pytest
from llama_server import LlamaServer, RecordingProxy
from openai_server import STYLES, local_cfg, write_units

from voicetune import drafting
from voicetune.pipeline import run_stage

pytestmark = pytest.mark.slow


@pytest.fixture
def llama(tmp_path):
    """llama.cpp's server on SmolLM2-135M behind a RecordingProxy."""
    server = LlamaServer(tmp_path / "server.log").start()
    proxy = RecordingProxy(server).start()
    yield proxy
    proxy.stop()
    server.stop()


def test_a_real_local_server_drafts_every_unit_once_within_its_cap(tmp_path, llama):
    # 4 units of ~60 words, one style: caps of 208-285 tokens, ~25 tokens/s on one busy core: ~35 s.
    units = write_units(tmp_path / "units", 4)
    cfg = local_cfg(tmp_path / "cache", llama, api_key_env=None, concurrency=2, styles=STYLES[:1],
                    timeout_s=60.0)
    stats = run_stage("pairs", cfg, {"units": units}, tmp_path / "out")
    planned = {i.request.prompt: i.request for i in drafting.plan(cfg, drafting.load_units(units))}
    sent = [r["body"]["messages"][-1]["content"] for r in llama.requests]
    assert sorted(sent) == sorted(planned)  # each request sent once: no timeout, no resend
    assert stats["requests_sent"] == 4 and stats["resends"] == 0 and stats["pairs"] + stats["rejected"] == 4
    for record in llama.requests:
        request = planned[record["body"]["messages"][-1]["content"]]
        assert record["body"]["max_tokens"] == request.max_tokens < 300  # from the passage, not 4,096
        assert record["status"] == 200
        assert record["reply"]["usage"]["completion_tokens"] <= request.max_tokens
