"""`voicetune serve`: a local OpenAI-compatible server for an exported model.

GGUF runs on llama.cpp's server (llama-cpp-python[server]); an MLX folder on mlx-lm's server.
Both take the chat template from the artifact, and the exported template makes the persona the
default system prompt, so any client that sends only the draft gets the author's voice.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from voicetune.errors import UserError

ALIAS = "voicetune"  # the model name clients ask for


def find_artifact(path: Path) -> Path:
    """A .gguf file or an MLX folder from: that file/folder, a GGUF folder, an export dir or a run dir."""
    path = path.expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if not path.exists():
        raise UserError(f"{path}: no such file or folder (give a run dir, an export folder or a .gguf)")
    index, export_dir = _artifacts_index(path)
    if index:
        prefer = ("mlx_q4", "gguf") if platform.system() == "Darwin" else ("gguf", "mlx_q4")
        fmt = next((f for f in prefer if f in index), None)
        if fmt is None:
            raise UserError(f"{path}: its export has no GGUF or MLX artifact; export with export=[gguf,mlx_q4]")
        path = export_dir / index[fmt]["folder"]
    ggufs = sorted(path.glob("*.gguf"), key=lambda p: p.stat().st_size)
    if ggufs:
        return ggufs[0]  # the smallest: the quantized file when there is one
    if (path / "config.json").is_file() and "quantization" in (path / "config.json").read_text():
        return path
    raise UserError(f"{path}: holds no .gguf file or MLX model")


def _artifacts_index(path: Path) -> tuple[dict, Path]:
    """The export's artifacts.json (in an export dir or a run dir) and the folder it sits in."""
    for candidate in (path / "artifacts.json", path / "export" / "artifacts.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text()), candidate.parent
    return {}, path


def command(artifact: Path, host: str, port: int, n_ctx: int) -> list[str]:
    """The server command line for this artifact."""
    if artifact.suffix == ".gguf":
        _require("llama_cpp.server", "pip install 'llama-cpp-python[server]' (or 'voicetune[export]')")
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(artifact), "--model_alias", ALIAS,
                "--host", host, "--port", str(port), "--n_ctx", str(n_ctx)]
    _require("mlx_lm", "pip install mlx-lm (and mlx[cpu] on Linux)")
    return [sys.executable, "-m", "mlx_lm", "server", "--model", str(artifact), "--host", host, "--port", str(port)]


def _require(module: str, how: str) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    if not found:
        raise UserError(f"serve: needs {module}: {how}")


def serve(path: Path, host: str, port: int, n_ctx: int) -> None:
    """Become the server (exec), so Ctrl-C or a terminate signal reaches it directly."""
    import os

    artifact = find_artifact(path)
    cmd = command(artifact, host, port, n_ctx)
    print(f"serving {artifact} as model '{ALIAS}' at http://{host}:{port}/v1", file=sys.stderr)
    print(f"  try: voicetune rewrite draft.txt --base-url http://{host}:{port}/v1", file=sys.stderr, flush=True)
    os.execv(cmd[0], cmd)
