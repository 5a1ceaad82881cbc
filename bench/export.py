"""Claim: the exported artifacts run faster and smaller than the transformers model they came from.

One run on this machine: the embedded SmolLM2-135M with a fresh LoRA adapter (speed does not
depend on training) is exported to merged fp16, GGUF q8_0, GGUF Q4_K_M and MLX 4-bit; each export
is timed and sized, then every artifact generates greedily for the same drafts (the demo corpus's
held-out paragraphs, same token cap) and its tokens/s is divided by the baseline's: transformers
fp32 on the merged folder, what the model costs before export.

    .venv/bin/python bench/export.py            # writes bench/results/export.md
    .venv/bin/python bench/export.py --quick    # 1 draft, 32 tokens, no file
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from conftest import make_cfg  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "export.md"
BASELINE = "transformers fp32 (merged)"


def fresh_adapter(cfg, folder: Path) -> Path:
    """An untrained LoRA adapter (B = 0) on the base: export cost and speed are the same as a trained one."""
    from voicetune.backends.hf import lora_model
    from voicetune.cache import Cache
    from voicetune.chat import load_tokenizer
    from voicetune.models import load_model
    from voicetune.stages.train import save_adapter

    cache = Cache(cfg.cache_dir)
    save_adapter(cfg, lora_model(load_model(cfg.model, cache), cfg.lora), load_tokenizer(cfg.model, cache), folder)
    return folder / "adapter"


def timed_exports(cfg, adapter: Path, root: Path) -> tuple[dict[str, Path], list[dict]]:
    """Build each artifact the way the export stage does; time and size it."""
    from voicetune.cache import Cache
    from voicetune.stages.export.gguf import convert, converter, quantize
    from voicetune.stages.export.merged import build_merged
    from voicetune.stages.export.mlx import build_mlx

    paths = {"merged": root / "merged", "q8_0": root / "m-q8_0.gguf", "f16": root / "m-f16.gguf",
             "Q4_K_M": root / "m-Q4_K_M.gguf", "mlx_q4": root / "mlx"}
    script = converter(Cache(cfg.cache_dir).models("tools"))  # fetched once, not timed
    from voicetune.chat import load_tokenizer

    cache = Cache(cfg.cache_dir)
    tok = load_tokenizer(cfg.model, cache)
    steps = [("merged fp16", "merged", lambda: build_merged(cfg, adapter, _mkdir(paths["merged"]), cache, tok)),
             ("GGUF q8_0", "q8_0", lambda: convert(script, paths["merged"], paths["q8_0"], "q8_0", "bench")),
             ("GGUF Q4_K_M (f16 + quantize)", "Q4_K_M", lambda: (convert(script, paths["merged"], paths["f16"], "f16", "bench"),
                                                               quantize(paths["f16"], paths["Q4_K_M"], "Q4_K_M"))),
             ("MLX 4-bit", "mlx_q4", lambda: build_mlx(cfg, paths["merged"], _mkdir(paths["mlx_q4"])))]
    rows = []
    for label, key, build in steps:
        started = time.perf_counter()
        build()
        rows.append({"export": label, "seconds": time.perf_counter() - started, "mb": _size(paths[key]) / 2**20})
    return paths, rows


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def drafts(cfg, n: int) -> list[list[dict]]:
    """The held-out paragraphs the pipeline's heldout stage writes for the demo corpus."""
    from voicetune import pipeline
    from voicetune.records import prompt, read_jsonl

    cfg.stages = ["heldout"]
    with tempfile.TemporaryDirectory() as run_dir:
        manifest = pipeline.run(cfg, Path(run_dir))
    heldout = Path(next(s["output"] for s in manifest["stages"] if s["name"] == "heldout"))
    records = [r for r in read_jsonl(heldout / "heldout.jsonl") if r["shape"] == "paragraph"][:n]
    return [prompt(r) for r in records]


def speeds(cfg, paths: dict[str, Path], convs: list[list[dict]], max_tokens: int) -> list[dict]:
    """Tokens/s of each runtime on the same drafts, each draft alone (what `rewrite` does)."""
    from voicetune.stages.export.runtimes import LlamaCpp, Mlx, Transformers

    contenders = [(BASELINE, lambda: Transformers.folder(paths["merged"], "merged", cfg.model.end_tokens)),
                  ("llama.cpp GGUF q8_0", lambda: LlamaCpp(paths["q8_0"])),
                  ("llama.cpp GGUF Q4_K_M", lambda: LlamaCpp(paths["Q4_K_M"])),
                  ("mlx-lm 4-bit", lambda: Mlx(paths["mlx_q4"]))]
    rows = []
    for label, load in contenders:
        runtime = load()
        runtime.generate(convs[:1], [8])  # warm-up: first-call allocation and kernel setup
        replies = [runtime.generate([conv], [max_tokens])[0] for conv in convs]
        runtime.close()
        tokens, seconds = sum(r["tokens"] for r in replies), sum(r["seconds"] for r in replies)
        rows.append({"runtime": label, "tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds})
    base = rows[0]["tok_s"]
    for row in rows:
        row["ratio"] = row["tok_s"] / base
    return rows


def report(exports: list[dict], runs: list[dict], args) -> str:
    merged_mb = exports[0]["mb"]
    lines = [f"## {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}",
             f"transformers {version('transformers')}, llama-cpp-python {version('llama-cpp-python')}, "
             f"mlx-lm {version('mlx-lm')}; {args.drafts} drafts x up to "
             f"{args.max_tokens} tokens, greedy.", "",
             "| export | seconds | MB | size vs merged fp16 |", "|---|---|---|---|"]
    lines += [f"| {e['export']} | {e['seconds']:.1f} | {e['mb']:.0f} | {e['mb'] / merged_mb:.2f} |" for e in exports]
    lines += ["", f"| runtime | tokens | seconds | tok/s | vs {BASELINE} |", "|---|---|---|---|---|"]
    lines += [f"| {r['runtime']} | {r['tokens']} | {r['seconds']:.1f} | {r['tok_s']:.1f} | {r['ratio']:.2f}x |"
              for r in runs]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 draft, 32 tokens, print only")
    p.add_argument("--drafts", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("VOICETUNE_CACHE", "~/.cache/voicetune")).expanduser())
    args = p.parse_args()
    if args.quick:
        args.drafts, args.max_tokens = 1, 32
    from voicetune.pipeline import resolve_choices

    # export.mlx.dtype=auto and the merge backend resolved as a run resolves them.
    cfg = resolve_choices(make_cfg(["tracking=disabled", "eval.samples_per_shape=4"], args.cache), ["export"])[0]
    with tempfile.TemporaryDirectory() as tmp:
        paths, exports = timed_exports(cfg, fresh_adapter(cfg, Path(tmp)), Path(tmp) / "artifacts")
        runs = speeds(cfg, paths, drafts(cfg, args.drafts), args.max_tokens)
    text = report(exports, runs, args)
    print(text)
    if not args.quick:
        RESULTS.write_text(RESULTS.read_text() + "\n" + text if RESULTS.exists() else HEADER + text)


HEADER = """# bench/export: export time and size, generation speed per artifact

`python bench/export.py`. Baseline: transformers fp32 generating from the merged folder (the
model before export). Every runtime generates greedily for the same held-out paragraphs, one at a
time, after one warm-up call; tok/s = generated tokens / wall seconds (prompt included).

"""


if __name__ == "__main__":
    main()
