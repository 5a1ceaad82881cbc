"""What a generator takes and gives back: a Request, a Reply, the Generator protocol."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Protocol

# Words -> tokens for English prose with a BPE tokenizer (~0.75 words per token).
TOKENS_PER_WORD = 1.35


@dataclass(frozen=True)
class Request:
    """One (unit, style) call: the unit's text, the prompt built from it, its reply's token cap."""

    key: str
    unit_id: str
    style: str
    text: str
    prompt: str
    max_tokens: int


@dataclass(frozen=True)
class Reply:
    """What came back: text and usage, or an error kind recorded as a rejection reason."""

    content: Optional[str] = None
    finish_reason: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # "malformed_response", or "request_failed" / "timed_out" (transient: never journaled, so a
    # rerun sends them again); None for a usable completion.
    error: Optional[str] = None
    detail: str = ""
    # The cap the request asked for (None in journals older than per-passage caps: it was
    # generator.max_output_tokens) and how many times this run sent it.
    max_tokens: Optional[int] = None
    sends: int = 1

    def record(self) -> dict[str, Any]:
        """The journal's view of this reply."""
        return asdict(self)


TRANSIENT = ("request_failed", "timed_out")


class Generator(Protocol):
    """What the pairs stage needs from a backend."""

    model: str
    remote: bool

    async def complete(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """Word-based token estimate (used offline and for dry runs)."""
    return round(len(text.split()) * TOKENS_PER_WORD)
