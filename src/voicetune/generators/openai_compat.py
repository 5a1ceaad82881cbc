"""`openai`, `azure` and `local` backends: one async client from the official `openai` package.

The client already retries 408/409/429/5xx and timeouts with exponential backoff and honours
Retry-After; this module adds what it does not do: turning malformed 200 bodies into
rejections and stopping the stage on errors that no retry can fix (bad key, unknown model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from voicetune.errors import UserError
from voicetune.redaction import redact_text
from voicetune.generators.requests import Reply, Request

# Per-item 400s (one over-long unit, one filtered text) are rejections; any other 400 means
# every request will fail the same way, so it stops the stage.
PER_ITEM_400 = ("context_length_exceeded", "content_filter", "string_above_max_length")


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
    """AsyncOpenAI / AsyncAzureOpenAI with the configured retries and timeout."""
    from openai import AsyncAzureOpenAI, AsyncOpenAI

    common = dict(api_key=api_key(gen), max_retries=gen.max_retries, timeout=gen.timeout_s)
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


@dataclass
class OpenAICompatGenerator:
    """Chat Completions through the official client; one user message per request."""

    client: Any
    backend: str
    model: str
    where: str
    api_key_env: str | None
    params: dict[str, Any]
    remote: bool = True

    @classmethod
    def from_config(cls, gen: Any) -> "OpenAICompatGenerator":
        # OpenAI deprecated max_tokens for max_completion_tokens (o-series reject the old
        # name); older Azure API versions and most local servers only know max_tokens.
        limit = "max_completion_tokens" if gen.backend == "openai" else "max_tokens"
        params = {"temperature": gen.temperature, limit: gen.max_output_tokens, "seed": gen.seed}
        return cls(client=make_client(gen), backend=gen.backend, model=gen.model,
                   where=redact_text(gen.base_url or "api.openai.com"), api_key_env=gen.api_key_env,
                   params=params)

    async def complete(self, request: Request) -> Reply:
        import openai

        try:
            response = await self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": request.prompt}],
                **self.params)
        except openai.APIStatusError as exc:
            return self._status_error(exc)
        except openai.APIConnectionError as exc:  # includes timeouts, after the retries
            return Reply(error="request_failed", detail=f"{type(exc).__name__}: {exc}"[:200])
        except (openai.APIResponseValidationError, ValueError) as exc:  # 200 with non-JSON
            return Reply(error="malformed_response", detail=f"{type(exc).__name__}: {exc}"[:200])
        return parse(response)

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
