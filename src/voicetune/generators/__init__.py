"""Generator backends for the pairs stage: one small interface, `make_generator` picks one.

A generator turns a `Request` into a `Reply` with `await complete(request)`; `remote` says
whether replies cost money (and so go through the request journal) or are recomputed.
"""

from __future__ import annotations

from typing import Any

from voicetune.generators.requests import Generator


def make_generator(gen_cfg: Any) -> Generator:
    """The backend named by `generator.backend`."""
    if gen_cfg.backend == "offline":
        from voicetune.generators.offline import OfflineGenerator

        return OfflineGenerator(model=gen_cfg.model, seed=gen_cfg.seed)
    from voicetune.generators.openai_compat import OpenAICompatGenerator

    return OpenAICompatGenerator.from_config(gen_cfg)
