"""A real local OpenAI-compatible HTTP server with scripted faults, plus shared test fixtures.

`FakeOpenAI` speaks POST /v1/chat/completions and the Azure path
/openai/deployments/<dep>/chat/completions?api-version=..., answers with the offline
de-polisher's rewrite of the text it receives, and records every request.
`FakeOpenAIProcess` runs the same server in a child process (for the bench: its handler
threads then don't compete with the client for one GIL); GET/DELETE /_requests read and
clear its records from outside.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

import pytest
from omegaconf import OmegaConf

from voicetune.config import DEPOLISH_PROMPT, Config
from voicetune.generators.offline import depolish

TEST_KEY = "sk-test-4f9a1c7e2b8d4e6f9a0b1c2d3e4f5a6b"
KEY_ENV = "VOICETUNE_TEST_API_KEY"
PROMPT = ("Rewrite the text below in this style: {instruction}\n"
          "Keep every fact and number, the same length and paragraphs.\n\nTEXT:\n{text}")
STYLES = [
    {"name": "ai_generic", "instruction": "generic AI assistant phrasing"},
    {"name": "verbose_coauthor", "instruction": "a wordy co-author full of hedges"},
    {"name": "loose_draft", "instruction": "a loose first draft"},
]
CHAT_PATH = re.compile(r"^(/v1|/openai/deployments/[^/]+)/chat/completions$")
RECORDS_PATH = "/_requests"  # control route, never recorded
SRC = str(Path(__file__).resolve().parents[1] / "src")


class _Address:
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"


@dataclass
class Fault:
    """Answer the first `times` requests whose prompt contains `match` (None: any) with `kind`."""

    kind: str
    match: Optional[str] = None
    times: int = 1


@dataclass
class FakeOpenAI(_Address):
    """The server: set `faults`, `latency` and `key` before or between runs."""

    key: str = TEST_KEY
    latency: float = 0.0
    slow_s: float = 2.0
    token_s: float = 0.0  # seconds per word of the reply, as a slow server generates them
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "FakeOpenAI":
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def counts(self) -> Counter:
        """Requests per prompt."""
        with self.lock:
            return Counter(r["prompt"] for r in self.requests)

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()

    def take_fault(self, prompt: str) -> Optional[str]:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and (fault.match is None or fault.match in prompt):
                    fault.times -= 1
                    return fault.kind
        return None


def split_prompt(prompt: str) -> tuple[str, str]:
    """(instruction, text) from a prompt built with PROMPT or with the project's own default prompt."""
    for template in (PROMPT, DEPOLISH_PROMPT):
        head, tail = template.split("{instruction}")
        middle, _ = tail.split("{text}")
        if prompt.startswith(head) and middle in prompt:
            instruction, _, text = prompt[len(head):].partition(middle)
            return instruction, text
    return "", prompt


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: of 10 clients connecting at once, some lost
    # their SYN and retried 1 s later (2 of the bench's first 10 requests took 1.26 s).
    request_queue_size = 64
    daemon_threads = True
    block_on_close = False  # a "slow" handler must not hold up shutdown


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK (~40 ms a request, which alone capped the bench at 0.65 of ideal).
    disable_nagle_algorithm = True
    fake: FakeOpenAI

    def log_message(self, *args: Any) -> None:
        """Quiet: no request lines in test output."""

    def do_GET(self) -> None:
        if self.path != RECORDS_PATH:
            return self._error(404, "no such route", "not_found")
        with self.fake.lock:
            records = [{k: r[k] for k in ("path", "prompt", "time")} for r in self.fake.requests]
        self._json(200, {"requests": records})

    def do_DELETE(self) -> None:
        if self.path != RECORDS_PATH:
            return self._error(404, "no such route", "not_found")
        self.fake.reset()
        self._json(200, {})

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", 0))
        data = self.rfile.read(size)
        if not size or len(data) < size:
            return  # the client aborted mid-send (a cancelled request): nothing was asked
        body = json.loads(data)
        prompt = body.get("messages", [{}])[-1].get("content", "")
        with self.fake.lock:
            self.fake.requests.append({"path": self.path, "prompt": prompt, "body": body,
                                       "time": time.monotonic()})
        if not CHAT_PATH.match(self.path.split("?")[0]):
            return self._error(404, "no such route", "not_found")
        given = self.headers.get("api-key") or self.headers.get("Authorization", "")
        if given.removeprefix("Bearer ") != self.fake.key:
            return self._error(401, "Incorrect API key provided", "invalid_api_key")
        time.sleep(self.fake.latency)
        self._answer(self.fake.take_fault(prompt), prompt, body)

    def _answer(self, kind: Optional[str], prompt: str, body: dict[str, Any]) -> None:
        if kind in ("401", "404", "429", "500", "503"):
            return self._error(int(kind), f"injected {kind}", f"injected_{kind}")
        if kind == "malformed":
            return self._send(200, b'{"id": "x", "choices": [ {"message": ')
        if kind == "slow":
            time.sleep(self.fake.slow_s)
        instruction, text = split_prompt(prompt)
        style = {s["instruction"]: s["name"] for s in STYLES}.get(instruction, instruction)
        content: Optional[str] = depolish(text, style, 0, "server")
        finish = "stop"
        if kind == "refusal":
            content = "I'm sorry, but I can't help with rewriting this text."
        elif kind == "summary":
            content = re.split(r"(?<=[.!?])\s+", text)[0]
        elif kind == "length":
            content, finish = " ".join(content.split()[:20]), "length"
        elif kind == "null_content":
            content = None
        choices = [] if kind == "no_choices" else [
            {"index": 0, "message": {"role": "assistant", "content": content},
             "finish_reason": finish}]
        usage = {"prompt_tokens": len(prompt.split()),
                 "completion_tokens": len((content or "").split())}
        time.sleep(usage["completion_tokens"] * self.fake.token_s)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        self._json(200, {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                         "model": body.get("model", ""), "choices": choices, "usage": usage})

    def _error(self, status: int, message: str, code: str) -> None:
        # 0.1 s, in the header the openai client prefers, so 429 tests stay fast.
        headers = {"retry-after-ms": "100"} if status == 429 else {}
        self._json(status, {"error": {"message": message, "type": "test", "code": code}},
                   headers)

    def _json(self, status: int, payload: dict, headers: Optional[dict] = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _send(self, status: int, data: bytes, headers: Optional[dict] = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer


class FakeOpenAIProcess(_Address):
    """A FakeOpenAI in a child process; `requests` holds path, prompt and time per request."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency

    def start(self) -> "FakeOpenAIProcess":
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(Path(__file__).parent)])}
        # The child exits when its stdin closes, so a crashed parent leaves no server behind.
        self.proc = subprocess.Popen([sys.executable, __file__, "--latency", str(self.latency)],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())
        return self

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with _DIRECT.open(self.root + RECORDS_PATH) as response:
            return json.loads(response.read())["requests"]

    def reset(self) -> None:
        _DIRECT.open(urllib.request.Request(self.root + RECORDS_PATH, method="DELETE")).close()


# 127.0.0.1 directly, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def server():
    """A running FakeOpenAI, stopped after the test."""
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


# ------------------------------------------------------------ shared fixtures

SENTENCES = [
    "We analysed {a:,} records from {y} and found an effect size of 0.{b} [{c}].",
    "The model reached {p}% accuracy (p < .001), which is higher than the baseline.",
    "However, the error rate of {e}e-4 is not negligible, and it depends on the cohort.",
    "Participants ({n} in total) were recruited because earlier studies used small samples.",
    "These results show that the method can help researchers examine many datasets.",
]


def unit_text(i: int) -> str:
    """A deterministic unit with numbers, citations and 1-3 paragraphs; 'Study-u<i>' marks it."""
    values = dict(a=1000 + 37 * i, y=2000 + i % 24, b=10 + i % 89, c=1 + i % 40,
                  p=80 + i % 19, e=1 + i % 9, n=20 + i)
    sentences = [s.format(**values) for s in SENTENCES]
    sentences[0] = f"In Study-u{i:04d}, " + sentences[0][0].lower() + sentences[0][1:]
    paragraphs = 1 + i % 3
    per = max(1, len(sentences) // paragraphs)
    parts = [" ".join(sentences[k:k + per]) for k in range(0, per * paragraphs, per)]
    return "\n\n".join(parts)


def write_units(folder: Path, n: int) -> Path:
    """units.jsonl with n units u0000..; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    shapes = ["sentence", "paragraph", "section", "abstract"]
    with open(folder / "units.jsonl", "w") as f:
        for i in range(n):
            text = unit_text(i)
            f.write(json.dumps({"id": f"u{i:04d}", "paper": f"paper{i % 5}", "section": "results",
                                "shape": shapes[i % 4], "text": text, "words": len(text.split()),
                                "tokens": round(len(text.split()) * 1.35),
                                "paragraphs": text.count("\n\n") + 1}) + "\n")
    return folder


def make_cfg(cache_dir: Path, styles: Optional[list] = None, **generator: Any) -> Any:
    """A full Config for the pairs stage with the given generator keys."""
    return OmegaConf.merge(OmegaConf.structured(Config), {
        "corpus": {"path": "."},
        "data": {"name": "test", "prompt": PROMPT, "instruction": "Rewrite this draft.",
                 "rough_styles": styles or STYLES},
        "generator": generator,
        "model": {"name": "tiny", "name_or_path": "tiny"},
        "lora": {}, "train": {}, "export": {}, "tracking": {}, "compute": {},
        "cache_dir": str(cache_dir),
    })


def local_cfg(cache_dir: Path, fake: FakeOpenAI, **generator: Any) -> Any:
    """Config for the `local` backend pointed at a FakeOpenAI, key from KEY_ENV."""
    settings = dict(backend="local", model="test-model", base_url=fake.url, api_key_env=KEY_ENV,
                    concurrency=4, timeout_s=5.0, max_retries=3)
    return make_cfg(cache_dir, **{**settings, **generator})


DRIVER = """
import sys
from pathlib import Path
from omegaconf import OmegaConf
from voicetune.pipeline import run_stage
run_stage("pairs", OmegaConf.load(sys.argv[1]), {"units": Path(sys.argv[2])}, Path(sys.argv[3]))
"""


def run_and_kill(cfg: Any, units: Path, out: Path, journal: Path, after_lines: int) -> None:
    """Run the pairs stage in a subprocess and SIGKILL it once the journal has `after_lines`."""
    cfg_path = out.parent / f"{out.name}-cfg.yaml"
    OmegaConf.save(cfg, cfg_path)
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(cfg_path), str(units), str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and (
            not journal.exists() or journal.read_bytes().count(b"\n") < after_lines):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def serve(argv: Optional[list[str]] = None) -> None:
    """Child-process entry: start a FakeOpenAI, print its port, serve until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.0)
    fake = FakeOpenAI(latency=parser.parse_args(argv).latency).start()
    print(fake.port, flush=True)
    sys.stdin.read()
    fake.stop()


if __name__ == "__main__":
    serve()
