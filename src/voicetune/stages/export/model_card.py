"""The model card written into every artifact folder: what it is, what it was trained on, how it did,
and the exact commands that load it."""

from __future__ import annotations

import json
from pathlib import Path

LOAD = {
    "merged": """```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{path}")
model = AutoModelForCausalLM.from_pretrained("{path}")
```""",
    "gguf": """```bash
voicetune serve {path}                    # OpenAI-compatible server (llama.cpp), persona built in
ollama create {name} -f {path}/Modelfile && ollama run {name}
llama-cli -m {path}/{gguf} -cnv           # llama.cpp; the GGUF carries the chat template
```""",
    "mlx_q4": """```bash
mlx_lm.generate --model {path} --prompt "<your rough draft>"
voicetune serve {path}                    # mlx_lm.server on a Mac
```""",
}


def model_card(cfg, fmt: str, folder: Path, dataset: Path | None = None, evaluation: Path | None = None) -> str:
    """Markdown card: base model, data summary, eval summary, how to load it."""
    gguf = next((p.name for p in sorted(folder.glob("*.gguf"))), "model.gguf")
    lines = [f"# {cfg.export.name} ({fmt})", "",
             f"A LoRA fine-tune of `{cfg.model.name_or_path}` ({cfg.model.name}) that rewrites rough drafts "
             "in the author's published voice, made by voicetune.", "",
             "## Persona (default system prompt)", "", f"> {cfg.corpus.persona}", "",
             f"User turn: the instruction, a blank line, then the draft. Instruction: *{cfg.data.instruction}*", ""]
    lines += _data_summary(dataset) + _eval_summary(evaluation)
    lines += ["## Load it (from this folder)", "", LOAD[fmt].format(path=".", name=cfg.export.name, gguf=gguf), "",
              "`voicetune.yaml` holds the configuration that made this folder; `persona.txt` the system prompt."]
    return "\n".join(lines) + "\n"


def _data_summary(dataset: Path | None) -> list[str]:
    if dataset is None or not (dataset / "card.json").is_file():
        return []
    card = json.loads((dataset / "card.json").read_text())
    counts = card["counts"]
    return ["## Data", "",
            f"{counts['split']['train']} training / {counts['split']['valid']} validation pairs from "
            f"{len(card['papers']['train'])} + {len(card['papers']['valid'])} papers (split by paper); "
            f"shapes {counts['shape']}; median {card['tokens']['median']} tokens per record.", ""]


def _eval_summary(evaluation: Path | None) -> list[str]:
    if evaluation is None or not (evaluation / "eval.json").is_file():
        return []
    models = json.loads((evaluation / "eval.json").read_text())["models"]
    rows = ["## Evaluation (held-out papers)", "", "| model | eval loss | length ratio (median) | early stop | runaway |",
            "|---|---|---|---|---|"]
    for name, m in models.items():
        o = m.get("overall", {})
        rows.append(f"| {name} | {m.get('eval_loss')} | {o.get('length_ratio_median', float('nan')):.2f} | "
                    f"{o.get('early_stop_rate', float('nan')):.2f} | {o.get('runaway_rate', float('nan')):.2f} |")
    return rows + [""]
