"""`openai`, `azure` and `local` backends: one async client from the official `openai` package.

The client's own retries are off (it resends timeouts too, while the server may still be
generating the abandoned reply): this module resends 408/409/429/5xx and dropped connections
with backoff and Retry-After (generator.max_retries) and timeouts only generator.timeout_retries
times, sets each request's timeout from the server's measured speed, turns malformed 200 bodies
into rejections and stops the stage on errors that no retry can fix (bad key, unknown model).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Optional

from voicetune.errors import UserError
from voicetune.redaction import redact_text
from voicetune.generators.requests import Reply, Request

# Per-item 400s (one over-long unit, one filtered text) are rejections; any other 400 means
# every request will fail the same way, so it stops the stage.
PER_ITEM_400 = ("context_length_exceeded", "content_filter", "string_above_max_length")
# What the openai client resends (besides every 5xx), and its backoff: 0.5 s doubling to 8 s,
# less up to 25% jitter; a Retry-After over 60 s ends the retries (a rerun sends it again).
RETRY_STATUS = (408, 409, 429)
BACKOFF_S, MAX_BACKOFF_S, MAX_RETRY_AFTER_S = 0.5, 8.0, 60.0
log = logging.getLogger(__name__)


def api_key(gen: Any) -> str:
    """The key from the env var named by generator.api_key_env (never from the config)."""
    if not gen.api_key_env:
        # validate() already demands api_key_env for openai/azure; local servers need none.
        return "not-needed"
    value = os.environ.get(gen.api_key_env)
    if not value:
        raise UserError(f"generator.api_key_env: environment variable {gen.api_key_env} is not "
                        f"set (it must hold the API key for backend {gen.backend})")
    return value


def make_client(gen: Any) -> Any:
    """AsyncOpenAI / AsyncAzureOpenAI without retries of its own (see the module docstring)."""
    from openai import AsyncAzureOpenAI, AsyncOpenAI

    common = dict(api_key=api_key(gen), max_retries=0, timeout=gen.timeout_s)
    if gen.backend == "azure":
        if not gen.api_version:
            raise UserError("generator.api_version=None: backend azure needs an API version "
                            "(e.g. 2024-10-21)")
        return AsyncAzureOpenAI(azure_endpoint=gen.base_url, api_version=gen.api_version,
                                **common)
    if gen.backend == "local" and not gen.base_url:
        raise UserError("generator.base_url=None: backend local needs the server URL "
                        "(e.g. http://127.0.0.1:8080/v1)")
    base, query = split_query(gen.base_url)
    return AsyncOpenAI(base_url=base, default_query=query or None, **common)


def split_query(url: str | None) -> tuple[str | None, dict[str, str]]:
    """`http://host/v1?api-key=K` -> ("http://host/v1", {"api-key": "K"}): a gateway that wants a
    query parameter gets it on every request (the client would append paths after the query)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    if not url or "?" not in url:
        return url, {}
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="")), dict(parse_qsl(parts.query))


class Pace:
    """Seconds per completion token of the server's recent replies; a request's timeout from its cap.

    timeout = 3 x cap x the slowest of the last 8 replies' seconds per token: a reply that runs to
    its cap at that pace takes 1 x; the rest leaves as long again to wait behind another request
    (llama.cpp's server runs one at a time: at concurrency 2 a request waits for one other at
    most) and as long again for a slower stretch. Until a reply has come back, and whenever it is
    longer, generator.timeout_s holds.
    """

    SAFETY = 3.0

    def __init__(self, floor_s: float):
        self.floor_s = floor_s
        self.recent: deque[float] = deque(maxlen=8)

    def observe(self, completion_tokens: int, seconds: float) -> None:
        if completion_tokens > 0:
            self.recent.append(seconds / completion_tokens)

    def timeout(self, max_tokens: int) -> float:
        if not self.recent:
            return self.floor_s
        return max(self.floor_s, self.SAFETY * max_tokens * max(self.recent))


@dataclass(frozen=True)
class Retry:
    """A failed send that may be resent: its reply if not, and the response headers."""

    reply: Reply
    headers: Any = None


TIMED_OUT = object()


@dataclass
class OpenAICompatGenerator:
    """Chat Completions through the official client; one user message per request."""

    client: Any
    backend: str
    model: str
    where: str
    api_key_env: Optional[str]
    params: dict[str, Any]
    limit: str
    max_retries: int
    timeout_retries: int
    pace: Pace
    remote: bool = True

    @classmethod
    def from_config(cls, gen: Any) -> "OpenAICompatGenerator":
        # OpenAI deprecated max_tokens for max_completion_tokens (o-series reject the old
        # name); older Azure API versions and most local servers only know max_tokens.
        limit = "max_completion_tokens" if gen.backend == "openai" else "max_tokens"
        return cls(client=make_client(gen), backend=gen.backend, model=gen.model,
                   where=redact_text(gen.base_url or "api.openai.com"), api_key_env=gen.api_key_env,
                   params={"temperature": gen.temperature, "seed": gen.seed}, limit=limit,
                   max_retries=gen.max_retries, timeout_retries=gen.timeout_retries,
                   pace=Pace(gen.timeout_s))

    async def complete(self, request: Request) -> Reply:
        """The reply, after up to max_retries resends of retryable failures and timeout_retries of timeouts."""
        retries = timeouts = 0
        while True:
            timeout = self.pace.timeout(request.max_tokens)
            outcome = await self._send(request, timeout)
            sent = dict(max_tokens=request.max_tokens, sends=1 + retries + timeouts)
            if isinstance(outcome, Reply):
                return replace(outcome, **sent)
            what = f"{request.unit_id}/{request.style}"
            if outcome is TIMED_OUT:
                waited = f"no reply in {timeout:.0f} s" if timeout >= 10 else f"no reply in {timeout:.1f} s"
                log.info("%s: %s (send %d)", what, waited, sent["sends"])
                if timeouts == self.timeout_retries:
                    return Reply(error="timed_out", detail=waited, **sent)
                timeouts += 1
                continue
            wait = retry_wait(outcome.headers, retries)
            if retries == self.max_retries or wait is None:
                return replace(outcome.reply, **sent)
            retries += 1
            log.info("%s: %s; resending in %.1f s (retry %d of %d)", what, outcome.reply.detail, wait,
                     retries, self.max_retries)
            await asyncio.sleep(wait)

    async def _send(self, request: Request, timeout: float) -> Any:
        """One send: a Reply (final), a Retry, or TIMED_OUT."""
        import openai

        start = time.monotonic()
        try:
            response = await self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": request.prompt}],
                timeout=timeout, **self.params, **{self.limit: request.max_tokens})
        except openai.APITimeoutError:
            return TIMED_OUT
        except openai.APIStatusError as exc:
            reply = self._status_error(exc)
            status = exc.status_code
            return Retry(reply, exc.response.headers) if status in RETRY_STATUS or status >= 500 else reply
        except openai.APIConnectionError as exc:
            return Retry(Reply(error="request_failed", detail=f"{type(exc).__name__}: {exc}"[:200]))
        except (openai.APIResponseValidationError, ValueError) as exc:  # 200 with non-JSON
            return Reply(error="malformed_response", detail=f"{type(exc).__name__}: {exc}"[:200])
        reply = parse(response)
        self.pace.observe(reply.completion_tokens, time.monotonic() - start)
        return reply

    def _status_error(self, exc: Any) -> Reply:
        """Per-item failures become rejections; auth/model/request errors stop the stage."""
        status, code = exc.status_code, str(getattr(exc, "code", "") or "")
        if status in (401, 403):
            word = "rejected the key" if status == 401 else "refused access for the key"
            raise UserError(f"generator: the API {word} ({status}) at {self.where}; check the "
                            f"env var named by generator.api_key_env ({self.api_key_env})")
        if status == 404:
            raise UserError(f"generator: model or endpoint not found (404) at {self.where} "
                            f"for generator.model={self.model!r}; check model and base_url")
        if status in (400, 422) and code not in PER_ITEM_400:
            raise UserError(f"generator: the API refused the request ({status}) at "
                            f"{self.where}: {_message(exc)}")
        return Reply(error="request_failed", detail=f"{status} {code}: {_message(exc)}")

    async def aclose(self) -> None:
        await self.client.close()


def retry_wait(headers: Any, retries: int) -> Optional[float]:
    """Seconds before the next send, as the openai client waits; None when the server says not to."""
    headers = headers or {}
    if headers.get("x-should-retry") == "false":
        return None
    after = _retry_after(headers)
    if after is not None:
        return after if after <= MAX_RETRY_AFTER_S else None
    return min(BACKOFF_S * 2 ** retries, MAX_BACKOFF_S) * (1 - 0.25 * random.random())


def _retry_after(headers: Any) -> Optional[float]:
    """retry-after-ms, or retry-after in seconds; None when absent or not a number."""
    for name, scale in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            value = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value > 0:
            return value
    return None


def _message(exc: Any) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    return " ".join(str(body.get("message") or exc.message).split())[:200]


def parse(response: Any) -> Reply:
    """A Reply from a Chat Completion; bodies without a usable message are malformed."""
    choices = getattr(response, "choices", None)
    if not choices:
        return Reply(error="malformed_response", detail="200 response without choices")
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    if not isinstance(content, str):
        return Reply(error="malformed_response", detail="choices[0].message.content missing")
    usage = getattr(response, "usage", None)
    return Reply(content=content, finish_reason=choices[0].finish_reason,
                 prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                 completion_tokens=getattr(usage, "completion_tokens", 0) or 0)
