"""Claim: on one GPU the project's trainer beats plain padded batches ~2.5x in real tokens/s on seed-like lengths.

A Llama-3.1-8B-shaped model (random weights: the GPU machine reaches no hub), bf16, LoRA r16
alpha32 on q/k/v/o, gradient checkpointing, seq_len 4096, batches of 4. Data like the seed's:
1,240 examples per epoch, 70% ~520, 15% ~2,700 and 15% ~920 tokens (random ids, the first 45%
of each a prompt without loss). Configurations:

    padded           plain transformers Trainer + peft, random batches of 4 padded to the longest
    grouped-sdpa     voicetune's trainer (voicetune.stages.train.trainer.make_trainer), one example per row, length-grouped
    packed-sdpa      voicetune's trainer, best-fit packed rows, restarting position_ids (the hf backend)
    packed-flex      the same rows with attn_implementation="flex_attention"
    unsloth-grouped  4-bit QLoRA via Unsloth, length-grouped rows (what the unsloth backend trains)
    unsloth-packed   the same model on packed rows (speed, and whether Unsloth isolates them)

Each configuration gets a fresh model, 2 warm-up steps, then --steps timed steps or
--time-budget-s seconds, whichever ends first; one that fails (OOM, no flex attention, no
unsloth) gets a row saying why and the rest still run. Unsloth configurations run in a child
process: Unsloth patches transformers' Llama classes when it loads a model.

    python bench/gpu_train.py                          # a lent H100/H200, ~8 min; appends bench/results/gpu_train.md
    python bench/gpu_train.py --configs padded,packed-sdpa --steps 4
    .venv/bin/python bench/gpu_train.py --tiny         # tiny Llama on the CPU, fp32, seconds (tests)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from voicetune.chat import IGNORE  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gpu_train.md"
CONFIGS = ("padded", "grouped-sdpa", "packed-sdpa", "packed-flex", "unsloth-grouped", "unsloth-packed")
PACKED = ("packed-sdpa", "packed-flex", "unsloth-packed")
# The seed's workload: 2 epochs of 1,240 examples, 1,150,852 tokens per epoch.
SEED_EPOCHS, SEED_TOKENS = 2, 1_150_852
# (share, mean tokens): the seed's paragraphs, sections and abstracts.
LENGTH_MIX = ((0.70, 520), (0.15, 2700), (0.15, 920))
PROMPT_SHARE = 0.45  # system + instruction + rough draft: a little under half of a record
WARMUP_STEPS = 2  # the first steps pay for lazy init, allocator growth and (flex) compilation


@dataclass
class Shape:
    """Model and data size of a run: the 8B-shaped GPU run, or a tiny CPU one for tests."""

    llama: dict
    seq_len: int
    batch: int
    examples: int
    length_scale: float
    probe: tuple[int, int]  # (prefix, subject) tokens of the packed-isolation check
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


FULL = Shape(llama=dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                        intermediate_size=14336, vocab_size=128256, max_position_embeddings=8192,
                        rope_theta=500000.0),
             seq_len=4096, batch=4, examples=1240, length_scale=1.0, probe=(512, 64))
TINY = Shape(llama=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        intermediate_size=128, vocab_size=512, max_position_embeddings=512),
             seq_len=256, batch=4, examples=64, length_scale=1 / 16, probe=(32, 8))


def lengths(shape: Shape, seed: int = 0) -> list[int]:
    """Seed-like example lengths: each a mean from LENGTH_MIX, +-20%, scaled and capped at seq_len."""
    rng = random.Random(seed)
    means = rng.choices([m for _, m in LENGTH_MIX], weights=[s for s, _ in LENGTH_MIX], k=shape.examples)
    return [max(8, min(shape.seq_len, round(m * shape.length_scale * rng.uniform(0.8, 1.2)))) for m in means]


def examples(shape: Shape, seed: int = 0) -> list[dict]:
    """Random token ids of those lengths; labels ignore the prompt share, as encode() does."""
    rng = random.Random(seed + 1)
    out = []
    for n in lengths(shape, seed):
        ids = [rng.randrange(3, shape.llama["vocab_size"]) for _ in range(n)]
        cut = round(n * PROMPT_SHARE)
        out.append({"input_ids": ids, "labels": [IGNORE] * cut + ids[cut:]})
    return out


def train_cfg(shape: Shape, steps: int):
    """The attributes make_trainer reads: the seed's optimizer recipe, no eval, no checkpoints, no W&B."""
    import torch

    # What the pipeline resolves train.precision=auto to: bf16 on a CUDA card that has it.
    precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    t = SimpleNamespace(epochs=1.0, seed=0, seq_len=shape.seq_len, batch_size=shape.batch, grad_accum=1, lr=2e-4,
                        scheduler="cosine", warmup_ratio=0.03, max_steps=WARMUP_STEPS + steps,
                        eval_steps=10**6, save_steps=10**6, precision=precision)
    lora = SimpleNamespace(r=16, alpha=32, dropout=0.05, targets=shape.targets)
    return SimpleNamespace(train=t, lora=lora)


def base_model(shape: Shape, attn: str):
    """A random-weight Llama built on the device in its training dtype, gradient checkpointing on."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    cuda = torch.cuda.is_available()
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(LlamaConfig(**shape.llama), attn_implementation=attn,
                                                 dtype=torch.bfloat16 if cuda else torch.float32)
    model.config.use_cache = False
    # 32 layers x 4 x 4,096 tokens of activations do not fit without it (DESIGN: 23-47 GiB with it).
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def hf_model(shape: Shape, cfg, attn: str):
    """The hf backend's model: bf16 base + the project's lora_model."""
    from voicetune.backends.hf import lora_model

    return lora_model(base_model(shape, attn), cfg.lora)


def unsloth_model(shape: Shape, cfg, work: Path):
    """The unsloth backend's model: the random base saved once, loaded 4-bit with the backend's own arguments."""
    from unsloth import FastLanguageModel

    from voicetune.backends.unsloth import load_kwargs, peft_kwargs

    folder = work / "base"
    base = base_model(shape, "sdpa")
    base.save_pretrained(folder)
    save_tokenizer(shape, folder)
    del base
    free()
    model, _ = FastLanguageModel.from_pretrained(**load_kwargs(cfg, str(folder), str(folder)))
    return FastLanguageModel.get_peft_model(model, **peft_kwargs(cfg))


def save_tokenizer(shape: Shape, folder: Path) -> None:
    """A word-level tokenizer as large as the vocabulary (Unsloth loads one next to the weights)."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<eos>"] + [f"t{i}" for i in range(3, shape.llama["vocab_size"])]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                            eos_token="<eos>").save_pretrained(folder)


def free() -> None:
    """Give the last configuration's memory back before the next one is built."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def make_clock(steps: int, budget_s: float):
    """A callback that times the steps after the warm-up and stops at `steps` or `budget_s`."""
    import torch
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.trainer, self.marks = None, []

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step < WARMUP_STEPS:
                return
            if torch.cuda.is_available():
                torch.cuda.synchronize()  # the step's kernels are done, not just queued
            now = time.perf_counter()
            if state.global_step == WARMUP_STEPS:
                self.marks = [self.mark(now)]
            elif state.global_step >= WARMUP_STEPS + steps or now - self.marks[0][0] > budget_s:
                self.marks.append(self.mark(now))
                control.should_training_stop = True

        def mark(self, now: float) -> tuple:
            return now, self.trainer.real_tokens, self.trainer.computed_tokens, self.trainer.state.global_step

    return Clock()


def padded_trainer(cfg, model, data: list[dict], work: Path, clock):
    """Plain transformers Trainer: records in a seeded shuffle, batches padded to their longest, attention mask."""
    import torch
    from transformers import IntervalStrategy, Trainer

    from counting import CountsPaddedTokens
    from voicetune.stages.train.trainer import training_args

    class CountingTrainer(CountsPaddedTokens, Trainer):
        """The plain Trainer, counting real and computed tokens."""

    def collate(batch: list[int]) -> dict:
        width = max(len(data[i]["input_ids"]) for i in batch)
        pad = [width - len(data[i]["input_ids"]) for i in batch]
        return {"input_ids": torch.tensor([data[i]["input_ids"] + [0] * p for i, p in zip(batch, pad)]),
                "labels": torch.tensor([data[i]["labels"] + [IGNORE] * p for i, p in zip(batch, pad)]),
                "attention_mask": torch.tensor([[1] * len(data[i]["input_ids"]) + [0] * p for i, p in zip(batch, pad)])}

    order = list(range(len(data)))
    random.Random(cfg.train.seed).shuffle(order)
    args = training_args(cfg, work, len(order) // cfg.train.batch_size, wandb=False)
    args.eval_strategy = IntervalStrategy.NO
    return CountingTrainer(model=model, args=args, train_dataset=order, data_collator=collate, callbacks=[clock])


def project_trainer(cfg, model, data: list[dict], work: Path, clock, pack: bool):
    """hf.make_trainer exactly as the train stage calls it (equal weights: random ids have no sections)."""
    from voicetune.stages.train.trainer import make_trainer

    tok = SimpleNamespace(pad_token_id=0)
    trainer = make_trainer(cfg, model, tok, data, data[:4], [1.0] * len(data), work, [clock], pack=pack)
    trainer.args.eval_strategy = "no"
    return trainer


def epoch_efficiency(trainer, data: list[dict], batch: int) -> float:
    """Real / computed tokens over the trainer's whole epoch, each batch padded to its longest row."""
    rows = trainer.train_dataset
    sizes = [sum(len(data[i]["input_ids"]) for i in ([r] if isinstance(r, int) else r)) for r in rows]
    batches = [sizes[i: i + batch] for i in range(0, len(sizes), batch)]
    return sum(sizes) / sum(len(b) * max(b) for b in batches)


def isolation(model, shape: Shape) -> float:
    """How much an example's logits move when packed behind another, as a share of how much they move when it may attend to it.

    ~0: packed examples are isolated; ~1: they attend to each other like one causal sequence.
    """
    import torch

    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(1)
    prefix, subject = (torch.randint(3, shape.llama["vocab_size"], (n,), generator=g) for n in shape.probe)
    both = torch.cat([prefix, subject])[None].to(device)
    restart = torch.cat([torch.arange(len(prefix)), torch.arange(len(subject))])[None].to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        alone = model(input_ids=subject[None].to(device), use_cache=False).logits[0].float()
        packed = model(input_ids=both, position_ids=restart, use_cache=False).logits[0, len(prefix):].float()
        leaky = model(input_ids=both, use_cache=False).logits[0, len(prefix):].float()
    model.train(was_training)
    return float((packed - alone).abs().max() / (leaky - alone).abs().max().clamp_min(1e-12))


def measure(name: str, shape: Shape, steps: int, budget_s: float) -> dict:
    """Build one configuration's model and trainer, check isolation, train, and return its figures."""
    import torch

    cfg = train_cfg(shape, steps)
    data = examples(shape)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if name.startswith("unsloth"):
            model = unsloth_model(shape, cfg, work)
        else:
            model = hf_model(shape, cfg, "flex_attention" if name.endswith("flex") else "sdpa")
        isolated = None if name == "padded" else isolation(model, shape)
        clock = make_clock(steps, budget_s)
        if name == "padded":
            trainer = padded_trainer(cfg, model, data, work, clock)
        else:
            trainer = project_trainer(cfg, model, data, work, clock, pack=name in PACKED)
        clock.trainer = trainer
        epoch = epoch_efficiency(trainer, data, shape.batch)
        trainer.train()
    (t0, real0, comp0, s0), (t1, real1, comp1, s1) = clock.marks
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    del trainer, model
    free()
    seconds = t1 - t0
    return {"name": name, "status": "ok", "steps": s1 - s0, "real_tok_s": (real1 - real0) / seconds,
            "computed_tok_s": (comp1 - comp0) / seconds, "efficiency": (real1 - real0) / (comp1 - comp0),
            "epoch_efficiency": epoch, "peak_gib": peak, "isolation": isolated}


def run_config(name: str, shape: Shape, args: argparse.Namespace) -> dict:
    """One configuration, isolated: a failure becomes its row; unsloth ones run in a child process."""
    import torch

    if name.endswith("flex") and not torch.cuda.is_available():
        return {"name": name, "status": "skipped: flex attention has no CPU backward"}
    if name.startswith("unsloth"):
        import importlib.util

        if not torch.cuda.is_available() or importlib.util.find_spec("unsloth") is None:
            return {"name": name, "status": "skipped: needs CUDA and unsloth"}
        if not args.child:
            return child(name, args)
    try:
        return measure(name, shape, args.steps, args.time_budget_s)
    except Exception as exc:  # OOM, missing kernels: the row says why, the other configurations still run
        free()
        return {"name": name, "status": failed(f"{type(exc).__name__}: {exc}")}


def failed(why: str) -> str:
    """A one-line, table-safe status."""
    first = (why.strip().splitlines() or [""])[0]
    return "failed: " + first.replace("|", "/")[:140]


def child(name: str, args: argparse.Namespace) -> dict:
    """Run one configuration in a fresh interpreter and read its JSON figures."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--child", "--configs", name, "--steps", str(args.steps),
               "--time-budget-s", str(args.time_budget_s), "--json", str(out)] + (["--tiny"] if args.tiny else [])
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.time_budget_s + 420)
        except subprocess.TimeoutExpired:
            return {"name": name, "status": failed("child process timed out")}
        if out.is_file():
            return json.loads(out.read_text())[0]
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"name": name, "status": failed(f"exit {done.returncode}: {tail}")}


def projected(row: dict) -> float:
    """Real tok/s over a whole epoch: measured computed tok/s x the epoch's efficiency (the timed steps see a few batches)."""
    return row["computed_tok_s"] * row["epoch_efficiency"]


def table(rows: list[dict]) -> str:
    """Markdown table; the ratio column is each configuration's epoch real tok/s over the padded baseline's."""
    base = next((projected(r) for r in rows if r["name"] == "padded" and r["status"] == "ok"), None)
    lines = ["| configuration | status | timed steps | real tok/s | computed tok/s | efficiency | epoch efficiency "
             "| epoch real tok/s | peak GiB | packed isolation | minutes, 2 epochs | vs padded |", "|---" * 12 + "|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | {r['status']} |" + " - |" * 10)
            continue
        epoch = projected(r)
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        iso = "-" if r["isolation"] is None else f"{r['isolation']:.3f}"
        ratio = "-" if base is None else f"{epoch / base:.2f}"
        minutes = SEED_EPOCHS * SEED_TOKENS / epoch / 60
        lines.append(f"| {r['name']} | ok | {r['steps']} | {r['real_tok_s']:,.0f} | {r['computed_tok_s']:,.0f} | "
                     f"{r['efficiency']:.3f} | {r['epoch_efficiency']:.3f} | {epoch:,.0f} | {peak} | {iso} | "
                     f"{minutes:,.1f} | {ratio} |")
    return "\n".join(lines)


def device_name() -> str:
    """The GPU's name, or the CPU's for --tiny."""
    import platform

    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())
    return f"CPU: {cpu}, {os.cpu_count()} cores"


def section(text: str, args: argparse.Namespace) -> str:
    """A dated results section: device, versions, command, table."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(p: str) -> str:
        try:
            return f"{p} {version(p)}"
        except PackageNotFoundError:
            return f"{p} -"

    libs = ", ".join(ver(p) for p in ("torch", "transformers", "peft", "unsloth"))
    command = "python bench/gpu_train.py " + " ".join(args.argv)
    return (f"\n## {datetime.date.today().isoformat()}: {device_name()}\n\n`{command.strip()}`\n\n"
            f"- {'tiny Llama (2 layers, hidden 64), fp32' if args.tiny else 'Llama-3.1-8B shape, bf16'}, "
            f"{WARMUP_STEPS} warm-up + up to {args.steps} timed steps or {args.time_budget_s:.0f} s; {libs}\n\n{text}\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Llama on the CPU, fp32 (for tests)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per configuration (8; --tiny: 2)")
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, from: {', '.join(CONFIGS)}")
    parser.add_argument("--time-budget-s", type=float, default=60.0, help="timed seconds per configuration at most")
    parser.add_argument("--out", type=Path, default=RESULTS, help="markdown file the dated section is appended to")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.steps = args.steps or (2 if args.tiny else 8)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.exit(2, f"--configs: unknown {', '.join(unknown)}; allowed: {', '.join(CONFIGS)}\n")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the configurations one by one, print the table, append it to --out."""
    args = parse(argv)
    import torch

    if not args.tiny and not torch.cuda.is_available():
        sys.exit("bench/gpu_train.py: no CUDA device here; run it on a GPU machine, or pass --tiny for the CPU check")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the GPU machine reaches no hub: fail fast, never hang
    shape = TINY if args.tiny else FULL
    rows = []
    for name in args.configs:
        rows.append(run_config(name, shape, args))
        print(f"{name}: {rows[-1]['status']}", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows))
    if args.child:
        return rows
    text = table(rows)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.write(section(text, args))
    return rows


if __name__ == "__main__":
    main()
