"""The one redaction rule for everything a run writes: config dumps, run.json, W&B, logs, errors.

Keys come only from environment variables; this cuts out what could still carry one: values of
secret-named env vars, api_key* config keys, strings shaped like keys, credentials in URLs.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from voicetune.config import looks_like_secret

REDACTED = "<redacted>"
SECRET_KEY = re.compile(r"api_key", re.IGNORECASE)
# A credential inside a URL or a longer string: `?api-key=...`, `&token=...`, `user:pass@host`,
# or a prefixed key (`sk-...`) anywhere.
URL_SECRET = re.compile(r"(?i)([?&;](?:[\w.-]*(?:key|token|secret|sig|signature|password|passwd|auth)[\w.-]*)=)([^&#\s'\"]+)")
URL_USERINFO = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/@\s:]+:)([^/@\s]+)(@)")
INLINE_KEY = re.compile(r"(?<![A-Za-z0-9])(?:sk-|sk_|pk-|ghp_|hf_|xox[bp]-|AIza)[A-Za-z0-9_\-]{12,}")
# Env vars whose values must never leave the process, whatever they look like.
SECRET_ENV_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH", re.IGNORECASE)
# Shorter env values ("1", "true", "/root") would redact innocent config text.
MIN_SECRET_LEN = 8
# looks_like_secret() also matches dot-free absolute paths ("/work/main/src/voicetune/demo_corpus"
# is 36 characters of its key alphabet); keys never start like a path.
PATH_START = ("/", "~", "./", "../")


def redact(node: Any, shapes: bool = True) -> Any:
    """`node` with api_key* keys dropped, secret-looking strings blanked, env secrets cut out."""
    secrets = [v for k, v in os.environ.items()
               if len(v) >= MIN_SECRET_LEN and (SECRET_ENV_NAME.search(k) or looks_like_secret(v))]
    return _redact(node, secrets, shapes)


def _redact(node: Any, secrets: list[str], shapes: bool) -> Any:
    if isinstance(node, dict):
        return {k: _redact(v, secrets, shapes) for k, v in node.items() if not SECRET_KEY.search(str(k))}
    if isinstance(node, list):
        return [_redact(v, secrets, shapes) for v in node]
    if isinstance(node, str):
        if shapes and looks_like_secret(node) and not node.startswith(PATH_START):
            return REDACTED
        for secret in secrets:
            node = node.replace(secret, REDACTED)
        node = URL_SECRET.sub(rf"\1{REDACTED}", node)
        node = URL_USERINFO.sub(rf"\1{REDACTED}\3", node)
        node = INLINE_KEY.sub(REDACTED, node)
    return node


def redact_text(text: str) -> str:
    """One string (a log line, a YAML dump) with every secret the config rule finds cut out."""
    return redact(text)


class RedactingFilter(logging.Filter):
    """Rewrites each log record with `redact_text`: no handler writes a key to a file."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logs() -> None:
    """Put the filter on every handler of the root logger (Hydra's run.log among them)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def redact_files(folder: Path) -> None:
    """Rewrite the YAML files in `folder` (Hydra's .hydra/) with the same rule."""
    for path in sorted(Path(folder).glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        clean = redact_text(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")
