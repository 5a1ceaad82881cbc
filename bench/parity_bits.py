"""Claim: on SmolLM2-135M, MLX 4-bit stops no more often than MLX 8-bit and GGUF q8_0, and rewrites worse.

From one export folder (its merged/ and gguf/*q8_0.gguf), mlx_lm.convert writes MLX at each of
the bit widths and group sizes below (the project's own build_mlx); then each MLX folder and the
q8_0 GGUF rewrite the parity drafts (parity's own order and caps: sentences and paragraphs in turn
from a held-out set) greedily, through the parity runtimes. Printed: stopped / n, tokens, tok/s.

    .venv/bin/python bench/parity_bits.py --export RUN/export --heldout RUN/heldout/heldout.jsonl --drafts 4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from conftest import make_cfg  # noqa: E402

# (bits, group size): mlx-lm's default 4/64, a finer 4-bit grid, and 8 bits.
QUANTS = [(4, 64), (4, 32), (8, 64)]


def drafts(heldout: Path, n: int) -> list[dict]:
    from voicetune.records import read_jsonl
    from voicetune.stages.export.parity import by_shape

    return by_shape(read_jsonl(heldout))[:n]


def measure(runtime, panel: list[dict], limits: list[int]) -> dict:
    from voicetune.records import prompt

    started = time.perf_counter()
    replies = runtime.generate([prompt(r) for r in panel], limits)
    tokens = sum(r["tokens"] for r in replies)
    return {"stopped": sum(r["finish"] == "stop" for r in replies), "n": len(replies), "tokens": tokens,
            "tok_s": round(tokens / (time.perf_counter() - started), 1), "first": replies[0]["text"][:60]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--drafts", type=int, default=4)
    ap.add_argument("--quants", nargs="*", default=[f"{b}/{g}" for b, g in QUANTS], help="bits/group, e.g. 8/64")
    ap.add_argument("--no-gguf", action="store_true")
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from voicetune.chat import caps
    from voicetune.records import reference
    from voicetune.stages.export.mlx import build_mlx
    from voicetune.stages.export.runtimes import LlamaCpp, Mlx

    cfg = make_cfg([])
    panel = drafts(args.heldout, args.drafts)
    limits = caps(AutoTokenizer.from_pretrained(args.export / "merged"), [reference(r) for r in panel], cfg.eval)
    print(f"drafts: {[r['shape'] for r in panel]}, caps {limits}")
    gguf = next((args.export / "gguf").glob("*q8_0.gguf"))
    rows = {} if args.no_gguf else {"GGUF q8_0 (llama.cpp)": lambda: LlamaCpp(gguf)}
    tmp = Path(tempfile.mkdtemp())
    for bits, group in (map(int, q.split("/")) for q in args.quants):
        folder = tmp / f"mlx{bits}-{group}"
        folder.mkdir()
        mlx_cfg = make_cfg([f"export.mlx.q_bits={bits}", f"export.mlx.group_size={group}", "export.mlx.dtype=float32"])
        build_mlx(mlx_cfg, args.export / "merged", folder)
        rows[f"MLX {bits}-bit, group {group} (mlx-lm)"] = lambda folder=folder: Mlx(folder)
    print("| artifact | stopped | n | tokens | tok/s | first reply |\n|---|---|---|---|---|---|")
    for name, load in rows.items():
        runtime = load()
        r = measure(runtime, panel, limits)
        runtime.close()
        print(f"| {name} | {r['stopped']} | {r['n']} | {r['tokens']} | {r['tok_s']} | {r['first']!r} |", flush=True)


if __name__ == "__main__":
    main()
