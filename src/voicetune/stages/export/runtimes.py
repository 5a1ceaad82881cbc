"""One small class per runtime that loads an artifact: render a chat to token ids, generate replies.

Each renders through the artifact's *own* template (the tokenizer files in the folder, the GGUF
metadata, the Modelfile), never through the training tokenizer, so a template lost on the way
shows up as a mismatch.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path


def available(cfg, adapter: Path, artifacts: dict[str, Path], cache) -> list:
    """The runtimes that can load this run's artifacts on this machine, in export order."""
    found = [Transformers.adapter(cfg, adapter, cache)]
    if "merged" in artifacts:
        found.append(Transformers.folder(artifacts["merged"], "merged", cfg.model.end_tokens))
    if "gguf" in artifacts:
        llama_cpp = importlib.util.find_spec("llama_cpp") is not None
        for gguf in sorted(artifacts["gguf"].glob("*.gguf")):
            if llama_cpp:
                found.append(LlamaCpp(gguf))
        first = sorted(artifacts["gguf"].glob("*.gguf"))[0]
        # transformers dequantizes a GGUF back to fp32 (the merged model again, ~25 s to load):
        # where llama.cpp generates from the file, transformers only renders its template.
        found.append(GgufTemplate(first) if llama_cpp else Transformers.gguf(first, cfg.model.end_tokens))
        found.append(Ollama(artifacts["gguf"] / "Modelfile", found[0].tokenizer))
    if "mlx_q4" in artifacts and _mlx_runs():
        found.append(Mlx(artifacts["mlx_q4"]))
    return found


def _mlx_runs() -> bool:
    return importlib.util.find_spec("mlx_lm") is not None


class Transformers:
    """transformers (+ peft for the adapter): the training stack, batched greedy generation."""

    generates = True

    def __init__(self, name: str, artifact: str, model, tokenizer, end_tokens):
        from voicetune.chat import end_token_ids

        self.name, self.artifact, self.model, self.tokenizer = name, artifact, model, tokenizer
        self.end_ids = end_token_ids(tokenizer, list(end_tokens))

    @classmethod
    def adapter(cls, cfg, adapter: Path, cache) -> "Transformers":
        from peft import PeftModel
        from transformers import AutoTokenizer

        from voicetune.models import load_for_inference

        model = PeftModel.from_pretrained(load_for_inference(cfg.model, cache), adapter)
        return cls("transformers+peft", "adapter", model, AutoTokenizer.from_pretrained(adapter), cfg.model.end_tokens)

    @classmethod
    def folder(cls, path: Path, artifact: str, end_tokens, gguf_file: str | None = None) -> "Transformers":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from voicetune.models import inference_placement

        extra = {"gguf_file": gguf_file} if gguf_file else {}
        tok = AutoTokenizer.from_pretrained(path, **extra)
        device, dtype = inference_placement()
        placed = {} if device == "cpu" else {"device_map": {"": device}}
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra, **placed)
        name = f"transformers gguf_file={gguf_file}" if gguf_file else "transformers"
        return cls(name, artifact, model, tok, end_tokens)

    @classmethod
    def gguf(cls, path: Path, end_tokens) -> "Transformers":
        return cls.folder(path.parent, f"gguf ({path.name})", end_tokens, gguf_file=path.name)

    def render(self, messages: list[dict]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=True)["input_ids"])

    def generate(self, convs: list[list[dict]], caps: list[int]) -> list[dict]:
        from voicetune.greedy import generate

        started = time.perf_counter()
        replies = generate(self.model, self.tokenizer, convs, caps, self.end_ids)
        each = (time.perf_counter() - started) / len(replies)  # one batch: share the time out
        return [{"text": r["text"], "raw": r["raw"], "finish": "stop" if r["ended"] else "length",
                 "tokens": r["tokens"], "seconds": each} for r in replies]

    def close(self) -> None:
        self.model = None


class GgufTemplate:
    """transformers' reading of a GGUF's tokenizer and template (gguf_file=), without the weights."""

    generates = False

    def __init__(self, path: Path):
        from transformers import AutoTokenizer

        self.name, self.artifact = f"transformers gguf_file={path.name}", f"gguf ({path.name})"
        self.tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)

    def render(self, messages: list[dict]) -> list[int]:
        return Transformers.render(self, messages)

    def close(self) -> None:
        pass


class LlamaCpp:
    """llama-cpp-python: the engine under llama.cpp, Ollama and LM Studio's GGUF runtime."""

    generates = True

    def __init__(self, path: Path):
        from llama_cpp import Llama

        self.name, self.artifact = f"llama.cpp ({path.name})", f"gguf ({path.name})"
        self.llm = Llama(model_path=str(path), n_ctx=8192, verbose=False, seed=0)
        self.formatter = self._formatter()

    def _formatter(self):
        """The chat formatter llama-cpp-python builds from the GGUF's own template metadata."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llm
        vocab_text = llm._model.token_get_text
        return Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                   eos_token=vocab_text(llm.token_eos()), bos_token=vocab_text(llm.token_bos()),
                                   stop_token_ids=[llm.token_eos()])

    def render(self, messages: list[dict]) -> list[int]:
        result = self.formatter(messages=messages)
        return self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def generate(self, convs: list[list[dict]], caps: list[int]) -> list[dict]:
        out = []
        for conv, cap in zip(convs, caps):
            started = time.perf_counter()
            res = self.llm.create_chat_completion(messages=conv, max_tokens=cap, temperature=0.0, seed=0)
            choice = res["choices"][0]
            text = choice["message"]["content"] or ""
            out.append({"text": text.strip(), "raw": text, "finish": choice["finish_reason"],
                        "tokens": res["usage"]["completion_tokens"], "seconds": time.perf_counter() - started})
        return out

    def close(self) -> None:
        self.llm.close()


class Mlx:
    """mlx-lm: LM Studio's engine on Apple Silicon (mlx[cpu] runs it on Linux)."""

    generates = True

    def __init__(self, path: Path):
        import mlx.core as mx
        import mlx_lm

        self.name, self.artifact = "mlx-lm", f"mlx ({path.name})"
        self.slow = not mx.metal.is_available()  # mlx[cpu]: one core, reference BLAS (parity.drafts_for)
        self.model, self.tokenizer = mlx_lm.load(str(path))

    def render(self, messages: list[dict]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def generate(self, convs: list[list[dict]], caps: list[int]) -> list[dict]:
        import mlx_lm

        out = []
        for conv, cap in zip(convs, caps):
            started, text, last = time.perf_counter(), "", None
            for last in mlx_lm.stream_generate(self.model, self.tokenizer, prompt=self.render(conv), max_tokens=cap):
                text += last.text
            out.append({"text": text.strip(), "raw": text, "finish": last.finish_reason or "length",
                        "tokens": last.generation_tokens, "seconds": time.perf_counter() - started})
        return out

    def close(self) -> None:
        self.model = None


class Ollama:
    """The Modelfile's TEMPLATE and SYSTEM, rendered as Ollama does; Ollama itself cannot run here."""

    generates = False

    def __init__(self, modelfile: Path, tokenizer):
        from voicetune.stages.export.gguf import read_modelfile

        self.name, self.artifact = "ollama Modelfile", "gguf (Modelfile)"
        self.template, self.system = read_modelfile(modelfile)
        self.tokenizer = tokenizer  # Ollama tokenizes with the GGUF's vocab, the same vocab

    def render(self, messages: list[dict]) -> list[int] | None:
        from voicetune.stages.export.gguf import render_ollama

        if len(messages) > 2 or messages[-1]["role"] != "user":
            return None  # the single-turn template covers one system + user turn
        system = messages[0]["content"] if messages[0]["role"] == "system" else self.system
        text = render_ollama(self.template, system, messages[-1]["content"])
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def close(self) -> None:
        pass
