"""`compute.dry_run=true`: what the remote stages would run where, and an estimate of minutes and dollars.

Nothing here needs a Modal token or the network: the local stages before the first remote one
run as usual (they are cheap and cached, and the dataset's token count is what training time
follows; with a paid generator add `generator.dry_run=true`), then the pipeline stops and prints
this plan instead of uploading anything.

Throughput (real tokens/s, LoRA on an 8B model) is kept per GPU in THROUGHPUT. Two rows are
measured: H100, 6,494 tok/s (packed rows, transformers + peft, DESIGN's GPU reference) and
A100-40GB, 2,131 tok/s (the seed's Unsloth QLoRA run: 2 epochs x 1.15M tokens in 18 min). The
others are the H100 figure scaled by dense bf16 TFLOPS (A100 312 vs H100 989 predicts 2,049,
within 4% of the seed's measured 2,131): estimates until `bench/gpu_check.sh` measures them.
A smaller model is scaled by parameter count (compute per token ~ 6 x params), at most 10x.
"""

from __future__ import annotations

from pathlib import Path

from voicetune.records import read_jsonl

REFERENCE_PARAMS_B = 8.03  # Llama-3.1-8B, the model the table is for
# GPU -> (real tok/s for 8B LoRA training, how that figure was obtained)
THROUGHPUT = {
    "H100": (6494, "measured (DESIGN, packed)"), "A100-40GB": (2131, "measured (seed, Unsloth)"),
    "A100-80GB": (2131, "as A100-40GB"), "H200": (6494, "as H100 (same compute)"),
    "B200": (14775, "H100 x 2250/989 TFLOPS"), "L40S": (2377, "H100 x 362/989 TFLOPS"),
    "A10G": (821, "H100 x 125/989 TFLOPS"), "L4": (795, "H100 x 121/989 TFLOPS"),
    "T4": (427, "H100 x 65/989 TFLOPS (fp16: no bf16)"),
}
MAX_SMALL_MODEL_SPEEDUP = 10  # kernels, not FLOPs, bound a 0.1-0.5B model
# Greedy generation for eval and parity, batch 4, 8B bf16: bound by reading the 16 GB of
# weights per step (H100 3.35 TB/s -> ~200 steps/s at best; HF generate reaches a fraction).
GENERATE_TOKENS_PER_S = 120  # estimate, not measured
CONTAINER_START_MIN = 2.0  # image pull (cached after the first build) + model load from the volume
# Bytes per parameter of each artifact: fp16 weights; Q4_K_M ~4.9 GB for 8.03B; MLX at the run's
# export.mlx.q_bits (resolved: 4 for the 8B, 8 under 1B) plus an fp16 scale and bias per group.
ARTIFACT_BYTES_PER_PARAM = {"merged": lambda mlx: 2.0, "gguf": lambda mlx: 0.61,
                            "mlx_q4": lambda mlx: mlx.q_bits / 8 + 4 / mlx.group_size}
# LoRA r16 on q/k/v/o of Llama-3.1-8B: 13.6M params (0.17%), 55 MB as saved (fp32).
ADAPTER_BYTES_PER_PARAM_AT_R16 = 55e6 / 8.03e9


def estimate(cfg, outputs: dict[str, Path], stages: list[str]) -> list[dict]:
    """One row per remote stage: GPU, upload and download in bytes, minutes and dollars."""
    from voicetune.compute.modal import GPU_PRICE_PER_HOUR

    gpu, params = str(cfg.compute.gpu), cfg.model.params_b
    rows, made = [], {}  # stage -> estimated bytes of what an earlier remote stage sends back
    for stage in stages:
        upload = sum(_size(outputs[n]) if n in outputs else made.get(n) or 0 for n in _needs(stage))
        minutes, download, note = ESTIMATORS[stage](cfg, outputs, gpu, params)
        made[stage] = download
        minutes = None if minutes is None else minutes + CONTAINER_START_MIN
        dollars = None if minutes is None else minutes / 60 * GPU_PRICE_PER_HOUR[gpu]
        rows.append({"stage": stage, "gpu": gpu, "upload_bytes": upload, "download_bytes": download,
                     "minutes": minutes, "usd": dollars, "note": note})
    return rows


def train_tokens_per_s(gpu: str, params_b: float | None) -> float | None:
    """Real tokens/s for LoRA training of a model of `params_b` billion parameters on `gpu`."""
    if params_b is None:
        return None
    speedup = min(REFERENCE_PARAMS_B / params_b, MAX_SMALL_MODEL_SPEEDUP)
    return THROUGHPUT[gpu][0] * speedup


def _train(cfg, outputs, gpu, params):
    train = read_jsonl(outputs["dataset"] / "train.jsonl")
    tokens = sum(r["tokens"] for r in train) * cfg.train.epochs
    rate = train_tokens_per_s(gpu, params)
    adapter = None if params is None else params * 1e9 * ADAPTER_BYTES_PER_PARAM_AT_R16 * cfg.lora.r / 16
    if rate is None:
        return None, adapter, "model.params_b unset: no estimate"
    scaled = "" if params == REFERENCE_PARAMS_B else f", scaled from 8B to {params}B by parameters"
    return tokens / rate / 60, adapter, f"{tokens:,.0f} tokens at {rate:,.0f} tok/s ({THROUGHPUT[gpu][1]}{scaled})"


def _eval(cfg, outputs, gpu, params):
    held = read_jsonl(outputs["heldout"] / "heldout.jsonl") if "heldout" in outputs else []
    words = sum(len(r["messages"][-1]["content"].split()) for r in held)
    tokens = 2 * words * 1.35 * cfg.eval.cap_ratio  # tuned and base, each up to its cap
    return tokens / GENERATE_TOKENS_PER_S / 60, 1e6, f"{len(held)} held-out drafts x 2 models (estimate)"


def _export(cfg, outputs, gpu, params):
    formats = [f for f, on in cfg.export.formats.items() if on and f in ARTIFACT_BYTES_PER_PARAM]
    if params is None:
        return None, None, "model.params_b unset: no estimate"
    download = sum(params * 1e9 * ARTIFACT_BYTES_PER_PARAM[f](cfg.export.mlx) for f in formats)
    # Merge + convert + quantize each write ~2 bytes/param at ~1 GB/s; parity: a few drafts each.
    minutes = params * 2 / 60 * (1 + len(formats)) + len(formats) * cfg.export.parity_probes * 0.5
    return minutes, download, f"formats {', '.join(formats) or 'none'} (estimate)"


ESTIMATORS = {"train": _train, "eval": _eval, "export": _export}


def _needs(stage: str) -> tuple[str, ...]:
    from voicetune.stages import STAGES

    return STAGES[stage].needs


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def describe(cfg, outputs: dict[str, Path], stages: list[str]) -> str:
    """The dry run's printout: the image, then a row per remote stage and the total."""
    from voicetune.compute.modal import image_packages

    rows = estimate(cfg, outputs, stages)
    lines = [f"compute.dry_run: {', '.join(stages)} would run on Modal ({cfg.compute.gpu}); nothing was uploaded.",
             "image: debian-slim, Python 3.11, " + " ".join(image_packages())]
    for r in rows:
        lines.append(f"  {r['stage']}: upload {_mb(r['upload_bytes'])}, download {_mb(r['download_bytes'])}, "
                     f"{_minutes(r['minutes'])}, {_usd(r['usd'])}; {r['note']}")
    known = [r for r in rows if r["minutes"] is not None]
    if known:
        lines.append(f"  total: ~{sum(r['minutes'] for r in known):.0f} min, ~${sum(r['usd'] for r in known):.2f} "
                     f"of GPU time (first run adds the image build, ~5 min, and the model download)")
    return "\n".join(lines)


def _mb(n) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB" if n < 1e9 else f"{n / 1e9:,.1f} GB"


def _minutes(m) -> str:
    return "? min" if m is None else f"~{m:.1f} min"


def _usd(d) -> str:
    return "$?" if d is None else f"~${d:.2f}"
