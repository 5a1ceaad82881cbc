"""GGUF export with llama.cpp's own converter, optional k-quant, and an Ollama Modelfile.

The converter ships only in llama.cpp's source tree (and the `llama-cpp-python` sdist, which
vendors it with a matching `gguf-py`; the PyPI `gguf` package is too old for it). The sdist is
fetched once with pip and its Python parts kept in the cache, never copied into this repo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from voicetune.errors import UserError

# The version used when llama-cpp-python is not installed; otherwise the installed one, so the
# converter always matches the runtime that loads its output.
LLAMA_CPP_PYTHON = "0.3.36"
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py", "LICENSE")


def require_llama_cpp(what: str):
    """The llama_cpp module, or one line saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise UserError(f"{what}: needs llama-cpp-python (pip install 'voicetune[export]', a ~4 min build)") from None
    return llama_cpp


def converter_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return LLAMA_CPP_PYTHON


def converter(tools: Path) -> Path:
    """convert_hf_to_gguf.py from the pinned llama-cpp-python sdist, fetched once into `tools`."""
    ver = converter_version()
    home = tools / f"llama.cpp-{ver}"
    script = home / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    tools.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tools) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
               f"llama-cpp-python=={ver}", "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"export=gguf: could not fetch llama.cpp's converter with pip ({_last_line(done.stderr)})")
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        staged = Path(tmp) / "llama.cpp"
        _extract_parts(sdist, staged)
        try:
            os.replace(staged, home)
        except OSError:  # another run finished first
            pass
    return script


def _extract_parts(sdist: Path, dest: Path) -> None:
    """Only the converter's Python parts (~3 MB of a 77 MB sdist)."""
    with tarfile.open(sdist) as tar:
        prefix = f"{tar.getmembers()[0].name.split('/')[0]}/vendor/llama.cpp/"
        members = [m for m in tar.getmembers()
                   if m.name.startswith(prefix) and m.name[len(prefix):].split("/")[0] in CONVERTER_PARTS]
        for m in members:
            m.name = m.name[len(prefix):]
        tar.extractall(dest, members=members, filter="data")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def convert(script: Path, merged: Path, outfile: Path, outtype: str, name: str) -> None:
    """Run llama.cpp's converter in its own process (it puts its gguf-py first on sys.path)."""
    cmd = [sys.executable, str(script), str(merged), "--outfile", str(outfile), "--outtype", outtype,
           "--model-name", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not outfile.is_file():
        raise RuntimeError(f"convert_hf_to_gguf failed for {merged}:\n{done.stderr[-3000:]}")


def quantize(src: Path, dst: Path, kind: str) -> None:
    """A k-quant (e.g. Q4_K_M) through llama.cpp's quantizer, from a 16-bit GGUF."""
    import ctypes

    llama_cpp = require_llama_cpp(f"export.gguf.quantize={kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{kind.upper()}")
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise RuntimeError(f"llama_model_quantize({kind}) returned {code} for {src}")


def build_gguf(cfg, merged: Path, folder: Path, cache) -> None:
    """<name>-<outtype>.gguf (+ <name>-<quant>.gguf) and a Modelfile that points at the smallest."""
    script = converter(cache.models("tools"))
    name, opts = cfg.export.name, cfg.export.gguf
    main = folder / f"{name}-{opts.outtype}.gguf"
    convert(script, merged, main, opts.outtype, name)
    target = main
    if opts.quantize:
        source = main
        if opts.outtype == "q8_0":  # requantizing q8_0 loses more than quantizing from f16
            source = folder / "tmp-f16.gguf"
            convert(script, merged, source, "f16", name)
        target = folder / f"{name}-{opts.quantize}.gguf"
        quantize(source, target, opts.quantize)
        if source != main:
            source.unlink()
    write_modelfile(cfg, merged, target, folder / "Modelfile")


def write_modelfile(cfg, merged: Path, gguf: Path, path: Path) -> None:
    """Ollama's Modelfile: FROM the GGUF, the training template, a stop per end token, the persona."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    ctx = min(getattr(AutoConfig.from_pretrained(merged), "max_position_embeddings", 8192), 8192)
    stops = list(dict.fromkeys(list(cfg.model.end_tokens) + [tok.eos_token]))
    lines = [f"FROM ./{gguf.name}", f'TEMPLATE """{ollama_template(tok, stops[0])}"""']
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    # A section and its rewrite together run to ~2x the section's tokens.
    lines += [f"PARAMETER num_ctx {ctx}", f'SYSTEM """{cfg.corpus.persona}"""']
    path.write_text("\n".join(lines) + "\n")


SYSTEM, PROMPT = "\x00SYSTEM\x00", "\x00PROMPT\x00"


def ollama_template(tokenizer, end_token: str) -> str:
    """Ollama's Go template for one system + user turn, cut from the tokenizer's own rendering.

    Rendering a conversation with placeholder texts and putting Ollama's variables where the
    placeholders land gives exactly the training prompt, for ChatML, Llama 3 or any template.
    """
    text = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
                                         add_generation_prompt=True, tokenize=False)
    if text.count(SYSTEM) != 1 or text.count(PROMPT) != 1:
        raise RuntimeError("chat template does not render the system and user text once each")
    text = text.replace(SYSTEM, "{{ .System }}").replace(PROMPT, "{{ .Prompt }}")
    return text + "{{ .Response }}" + end_token


def render_ollama(template: str, system: str, prompt: str) -> str:
    """What Ollama sends the model for one turn, up to where the reply starts (for parity checks)."""
    head = template.split("{{ .Response }}")[0]
    return head.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)


def read_modelfile(path: Path) -> tuple[str, str]:
    """TEMPLATE and SYSTEM back from a Modelfile (triple-quoted values, as written above)."""
    import re

    text = path.read_text()
    found = {k: re.search(rf'^{k} """(.*?)"""', text, re.S | re.M) for k in ("TEMPLATE", "SYSTEM")}
    if not all(found.values()):
        raise UserError(f"{path}: needs TEMPLATE and SYSTEM in triple quotes")
    return found["TEMPLATE"].group(1), found["SYSTEM"].group(1)
