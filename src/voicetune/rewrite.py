"""`voicetune rewrite`: one draft through any OpenAI-compatible endpoint, streamed, with length checks.

The user turn is the training instruction, a blank line, then the draft, and the system turn is
the persona: the prompt the model was trained on. Works against `voicetune serve`, LM Studio
(http://localhost:1234/v1), Ollama (http://localhost:11434/v1) or a hub model for comparison.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from voicetune.errors import UserError

# ~1.4 tokens per English word for Llama/SmolLM tokenizers; 1.5x is the same cap as the probes.
TOKENS_PER_WORD = 1.4
EARLY_STOP = 0.6  # a rewrite under 60% of the draft's words dropped content


@dataclass
class Prompt:
    persona: str
    instruction: str


def prompt_for(artifact: Path | None) -> Prompt:
    """Persona and instruction from an exported folder's voicetune.yaml, else the defaults."""
    from omegaconf import OmegaConf

    from voicetune.config import CorpusConfig, DataConfig

    if artifact is None:
        return Prompt(CorpusConfig.persona, DataConfig.instruction)
    conf = Path(artifact).expanduser()
    conf = conf if conf.is_file() else conf / "voicetune.yaml"
    if not conf.is_file():
        raise UserError(f"--artifact {artifact}: no voicetune.yaml there (give an exported folder)")
    cfg = OmegaConf.load(conf)
    return Prompt(cfg.corpus.persona, cfg.data.instruction)


def read_draft(source: str) -> str:
    text = sys.stdin.read() if source == "-" else _read_file(Path(source))
    if not text.strip():
        raise UserError(f"{'stdin' if source == '-' else source}: the draft is empty")
    return text.strip()


def _read_file(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"{path}: no such file (give a text file, or - for stdin)")
    return path.read_text()


def token_cap(draft: str) -> int:
    """The probes' cap (eval.cap_ratio x the reference, + room for the end token) on the draft's estimated tokens."""
    from voicetune.chat import token_cap as cap_for
    from voicetune.config import EvalConfig

    return cap_for(math.ceil(TOKENS_PER_WORD * len(draft.split())), EvalConfig.cap_ratio, EvalConfig.cap_extra)


def rewrite(draft: str, prompt: Prompt, base_url: str, model: str, api_key_env: str | None,
            max_tokens: int | None, temperature: float, out=sys.stdout) -> dict:
    """Stream the rewrite to `out`; return finish reason, words and the warnings printed."""
    from openai import APIConnectionError, APIStatusError, OpenAI

    key = os.environ.get(api_key_env, "") if api_key_env else "not-needed"
    if api_key_env and not key:
        raise UserError(f"--api-key-env {api_key_env}: that environment variable is not set")
    client = OpenAI(base_url=base_url, api_key=key, max_retries=1, timeout=600)
    cap = max_tokens or token_cap(draft)
    messages = [{"role": "system", "content": prompt.persona},
                {"role": "user", "content": prompt.instruction + "\n\n" + draft}]
    text, finish = "", None
    try:
        for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=cap,
                                                    temperature=temperature, stream=True):
            if not chunk.choices:
                continue
            piece = chunk.choices[0].delta.content or ""
            text += piece
            out.write(piece)
            out.flush()
            finish = chunk.choices[0].finish_reason or finish
    except APIConnectionError:
        raise UserError(f"--base-url {base_url}: nothing answers there (start one: voicetune serve RUN_DIR)") from None
    except APIStatusError as exc:
        raise UserError(f"--base-url {base_url}: the server said {exc.status_code}: {exc.message}") from None
    out.write("\n")
    return {"finish_reason": finish, "words": len(text.split()), "draft_words": len(draft.split()),
            "warnings": length_warnings(finish, len(text.split()), len(draft.split()), cap)}


def length_warnings(finish: str | None, words: int, draft_words: int, cap: int) -> list[str]:
    """Why a rewrite may not be usable: ran into the cap, or stopped well short of the draft."""
    warnings = []
    if finish == "length":
        warnings.append(f"hit the token cap ({cap} tokens) before the end token: the model ran on "
                        "(raise --max-tokens, or check the export's stop tokens)")
    elif words < EARLY_STOP * draft_words:
        warnings.append(f"stopped early: {words} words for a {draft_words}-word draft "
                        f"({words / max(1, draft_words):.0%}); content may be missing")
    return warnings
