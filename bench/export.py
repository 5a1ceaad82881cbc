"""Claim: llama.cpp runs the exported model faster than transformers at the same precision, and its quantized files faster and smaller still.

The embedded SmolLM2-135M with a fresh LoRA adapter (speed does not depend on training) is
merged (fp16 safetensors, the folder every other format converts from), then exported with the
project's own paths: llama.cpp's converter to GGUF f32, f16 and q8_0, llama.cpp's quantizer to
Q4_K_M (from the f16), mlx_lm.convert to MLX 4-bit; each export is timed and sized. Every runtime
is loaded once and warmed up; then, round after round, each generates greedily for the same
drafts (the demo corpus's held-out paragraphs, one at a time, same token cap), the order of the
runtimes reversed every other round so that load from other jobs hits all. Like with like:
transformers fp32 (the model before export) against llama.cpp GGUF f32, with the same number of
threads; f16, q8_0, Q4_K_M and MLX 4-bit are separate rows, the last three labelled quantized.

    .venv/bin/python bench/export.py            # 2 drafts x 64 tokens x 3 rounds, writes bench/results/export.md
    .venv/bin/python bench/export.py --quick    # 1 draft, 16 tokens, 2 rounds, no file
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "bench")]

from conftest import make_cfg  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "export.md"
BASELINE, SAME_RUNTIME = "transformers fp32 (merged)", "llama.cpp GGUF f32"
# Each runtime: label, weights as it computes with them, artifact key.
RUNTIMES = [(BASELINE, "fp32", "merged"), (SAME_RUNTIME, "fp32", "f32"), ("llama.cpp GGUF f16", "fp16", "f16"),
            ("llama.cpp GGUF q8_0", "quantized 8-bit", "q8_0"), ("llama.cpp GGUF Q4_K_M", "quantized 4-bit", "Q4_K_M"),
            ("mlx-lm 4-bit", "quantized 4-bit (fp32 activations)", "mlx_q4")]


def fresh_adapter(cfg, folder: Path) -> Path:
    """An untrained LoRA adapter (B = 0) on the base: export cost and speed are the same as a trained one."""
    from voicetune.backends.hf import lora_model
    from voicetune.cache import Cache
    from voicetune.chat import load_tokenizer
    from voicetune.models import load_model
    from voicetune.stages.train import save_adapter

    cache = Cache(cfg.cache_dir)
    save_adapter(cfg, lora_model(load_model(cfg.model, cache), cfg.lora).save_pretrained, load_tokenizer(cfg.model, cache), folder)
    return folder / "adapter"


def timed_exports(cfg, adapter: Path, root: Path) -> tuple[dict[str, Path], list[dict]]:
    """Build each artifact the way the export stage does; time and size it."""
    from voicetune.cache import Cache
    from voicetune.chat import load_tokenizer
    from voicetune.stages.export.gguf import convert, converter, quantize
    from voicetune.stages.export.merged import build_merged
    from voicetune.stages.export.mlx import build_mlx

    paths = {"merged": root / "merged", "mlx_q4": root / "mlx",
             **{k: root / f"m-{k}.gguf" for k in ("f32", "f16", "q8_0", "Q4_K_M")}}
    cache = Cache(cfg.cache_dir)
    script = converter(cache.models("tools"))  # fetched once, not timed
    tok = load_tokenizer(cfg.model, cache)
    # f32 is not an export.gguf.outtype choice (nobody ships it); the converter writes it like the others.
    gguf = [(f"GGUF {k}", k, lambda k=k: convert(script, paths["merged"], paths[k], k, "bench"))
            for k in ("f32", "f16", "q8_0")]
    steps = [("merged fp16", "merged", lambda: build_merged(cfg, adapter, _mkdir(paths["merged"]), cache, tok)),
             *gguf, ("GGUF Q4_K_M (quantize the f16)", "Q4_K_M", lambda: quantize(paths["f16"], paths["Q4_K_M"], "Q4_K_M")),
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


def load(cfg, key: str, path: Path, threads: int):
    """The export stage's runtime for one artifact; llama.cpp set to torch's thread count."""
    from voicetune.stages.export.runtimes import LlamaCpp, Mlx, Transformers

    if key == "merged":
        return Transformers.folder(path, "merged", cfg.model.end_tokens)
    if key == "mlx_q4":
        return Mlx(path)
    runtime = LlamaCpp(path)
    # llama-cpp-python generates on cpu_count // 2 threads by default (1 here); torch uses all.
    runtime.llm._ctx.set_n_threads(threads, threads)
    return runtime


def round_order(names: list[str], i: int) -> list[str]:
    """Round i's order: as listed in even rounds, reversed in odd ones (no runtime always first or last)."""
    return list(names) if i % 2 == 0 else list(reversed(names))


def speeds(cfg, paths: dict[str, Path], convs: list[list[dict]], max_tokens: int, rounds: int) -> dict[str, list[dict]]:
    """Tokens/s of every runtime on the same drafts, each draft alone (what `rewrite` does), round by round."""
    import torch

    runtimes = {label: load(cfg, key, paths[key], torch.get_num_threads()) for label, _, key in RUNTIMES}
    for runtime in runtimes.values():
        runtime.generate(convs[:1], [8])  # warm-up: first-call allocation and kernel setup
    runs: dict[str, list[dict]] = {label: [] for label in runtimes}
    for i in range(rounds):
        for label in round_order(list(runtimes), i):
            replies = [runtimes[label].generate([conv], [max_tokens])[0] for conv in convs]
            tokens, seconds = sum(r["tokens"] for r in replies), sum(r["seconds"] for r in replies)
            runs[label].append({"tokens": tokens, "seconds": seconds, "tok_s": tokens / seconds})
            print(f"round {i + 1} {label}: {tokens} tokens in {seconds:.1f} s, {tokens / seconds:.2f} tok/s",
                  file=sys.stderr, flush=True)
    for runtime in runtimes.values():
        runtime.close()
    return runs


def ratios(runs: dict[str, list[dict]], base: str) -> dict[str, list[float]]:
    """Each runtime's tok/s over the base's in the same round (the two ran minutes apart, under similar load)."""
    return {label: [r["tok_s"] / b["tok_s"] for r, b in zip(rs, runs[base])] for label, rs in runs.items()}


def report(exports: list[dict], runs: dict[str, list[dict]], convs: int, args, load: list[float]) -> str:
    """Markdown: setup, exports, like-for-like and quantized speed tables, per round."""
    import torch

    from train import cpu_name

    libs = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "llama-cpp-python", "mlx", "mlx-lm"))
    vs_base, vs_same = ratios(runs, BASELINE), ratios(runs, SAME_RUNTIME)
    merged_mb = exports[0]["mb"]
    lines = [f"`.venv/bin/python bench/export.py --drafts {args.drafts} --max-tokens {args.max_tokens} "
             f"--rounds {args.rounds}`", "",
             f"- date: {datetime.date.today().isoformat()}",
             f"- machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, {libs}; "
             f"1-minute load average {load[0]:.1f} before, {load[1]:.1f} after (other jobs share the machine)",
             f"- setup: {convs} held-out paragraphs x up to {args.max_tokens} tokens, greedy, each draft alone, "
             f"{args.rounds} rounds (order reversed every other round); torch and llama.cpp on "
             f"{torch.get_num_threads()} threads", "",
             "| export | seconds | MB | size vs merged fp16 |", "|---|---|---|---|"]
    lines += [f"| {e['export']} | {e['seconds']:.1f} | {e['mb']:.0f} | {e['mb'] / merged_mb:.2f} |" for e in exports]
    groups = [("Like for like (not quantized)", [r for r in RUNTIMES if not r[1].startswith("quantized")]),
              ("Quantized (fewer bits per weight: faster and smaller, and less exact)",
               [r for r in RUNTIMES if r[1].startswith("quantized")])]
    for title, members in groups:
        lines += ["", f"{title}:", "", "| runtime | weights | tokens per round | tok/s per round | median tok/s | "
                  f"vs {BASELINE}, per round | median | vs {SAME_RUNTIME}, median |", "|---" * 8 + "|"]
        for label, weights, _ in members:
            rs = runs[label]
            tokens, tok_s = (", ".join(f"{r[k]:.{d}f}" for r in rs) for k, d in (("tokens", 0), ("tok_s", 1)))
            per_round = ", ".join(f"{x:.2f}" for x in vs_base[label])
            lines.append(f"| {label} | {weights} | {tokens} | {tok_s} | {statistics.median(r['tok_s'] for r in rs):.1f} | "
                         f"{per_round} | {statistics.median(vs_base[label]):.2f}x | "
                         f"{statistics.median(vs_same[label]):.2f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 draft, 16 tokens, 2 rounds, print only")
    p.add_argument("--drafts", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("VOICETUNE_CACHE", "~/.cache/voicetune")).expanduser())
    args = p.parse_args()
    if args.quick:
        args.drafts, args.max_tokens, args.rounds = 1, 16, 2
    from voicetune.pipeline import resolve_choices

    # export.mlx.dtype=auto and the merge backend resolved as a run resolves them.
    cfg = resolve_choices(make_cfg(["tracking=disabled", "eval.samples_per_shape=4"], args.cache), ["export"])[0]
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        paths, exports = timed_exports(cfg, fresh_adapter(cfg, Path(tmp)), Path(tmp) / "artifacts")
        for e in exports:  # now, not only in the report: a run killed mid-rounds keeps them
            print(f"export {e['export']}: {e['seconds']:.1f} s, {e['mb']:.0f} MB", file=sys.stderr, flush=True)
        convs = drafts(cfg, args.drafts)
        runs = speeds(cfg, paths, convs, args.max_tokens, args.rounds)
    load.append(os.getloadavg()[0])
    text = report(exports, runs, len(convs), args, load)
    print(text)
    if not args.quick:
        RESULTS.write_text(HEADER + text)


HEADER = """# bench/export: export time and size, generation speed per artifact

Baseline: transformers fp32 generating from the merged folder (the model before export); its
like-for-like rival is llama.cpp on the same weights in f32. tok/s = generated tokens / wall
seconds of each call (prompt processing included), after one warm-up call per runtime.

"""


if __name__ == "__main__":
    main()
