"""Claim: packed rows train >= 1.5x the real tokens/s of TRL SFTTrainer defaults at padding efficiency >= 0.95.

Same shape_mix dataset (built by the pipeline from the demo corpus), same SmolLM2-135M fp32,
same LoRA (r16 alpha32 q/k/v/o, dropout 0.05), same optimizer, lr schedule, batch 4 and
seq_len 1024, same number of optimizer steps. Ours: `make_trainer` (BFD-packed rows, restarting
position_ids, no attention mask). Baseline: `SFTTrainer` on the `messages` column with TRL's
data defaults (no packing, random batches padded to their longest sequence). The contenders
alternate (ours, TRL, ours, TRL, ...) so that load from other jobs hits both; every run loads a
fresh model, takes one warm-up step, and times the steps after it.

    .venv/bin/python bench/train.py            # 3 timed steps x 2 rounds (~12 min idle, ~25 loaded), writes results
    .venv/bin/python bench/train.py --quick    # 1 timed step x 1 round, no file
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
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from conftest import make_cfg  # noqa: E402

from voicetune.cache import Cache  # noqa: E402
from voicetune.chat import encode_records, end_tokens  # noqa: E402
from voicetune.records import read_jsonl  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "train.md"
OURS, TRL = "voicetune packed", "TRL SFTTrainer defaults"
GOAL_SPEEDUP, GOAL_EFFICIENCY = 1.5, 0.95
WARMUP_STEPS = 1  # the first step pays for lazy init and allocator growth in both trainers


def dataset_dir(cache_dir: Path) -> Path:
    """The shape_mix dataset of the demo corpus, built (or found in the cache) by the pipeline."""
    from voicetune import pipeline

    cfg = make_cfg(["data=shape_mix", "tracking=disabled", "stages=[dataset]"], cache_dir)
    with tempfile.TemporaryDirectory() as run_dir:
        manifest = pipeline.run(cfg, Path(run_dir))
    return Path(next(s["output"] for s in manifest["stages"] if s["name"] == "dataset"))


def train_cfg(args: argparse.Namespace):
    """The project's config with the bench's train settings (no eval, no checkpoints inside the run)."""
    steps = WARMUP_STEPS + args.steps
    from voicetune.pipeline import resolve_choices

    cfg = make_cfg(["tracking=disabled", f"train.batch_size={args.batch}", "train.grad_accum=1",
                    f"train.seq_len={args.seq_len}", f"train.max_steps={steps}",
                    "train.eval_steps=100000", "train.save_steps=100000"], args.cache)
    return resolve_choices(cfg, ["train"])[0]  # train.backend and train.precision as a run resolves them


def fresh_model(cfg):
    """SmolLM2-135M fp32 with the `lora` group's adapter, seeded so every run starts equal."""
    from transformers import set_seed

    from voicetune.models import load_model
    from voicetune.backends.hf import lora_model

    set_seed(cfg.train.seed)
    model = lora_model(load_model(cfg.model, Cache(cfg.cache_dir)), cfg.lora)
    model.config.use_cache = False  # packed rows need it off; TRL turns it off in compute_loss too
    return model


def make_clock():
    """A callback that times the steps after the warm-up and reads the trainer's token counters."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.trainer, self.marks = None, []

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (WARMUP_STEPS, state.max_steps):
                t = self.trainer
                self.marks.append((time.perf_counter(), t.real_tokens, t.computed_tokens))

    return StepClock()


def ours(cfg, tok, data: Path, work: Path, clock):
    """make_trainer exactly as the train stage builds it, on the same weighted, packed rows."""
    from voicetune.stages.train.trainer import make_trainer

    ends = end_tokens(cfg.model, tok)
    train_ex, recs, _ = encode_records(read_jsonl(data / "train.jsonl"), tok, ends, cfg.train.seq_len)
    valid_ex, _, _ = encode_records(read_jsonl(data / "valid.jsonl")[:4], tok, ends, cfg.train.seq_len)
    trainer = make_trainer(cfg, fresh_model(cfg), tok, train_ex, valid_ex, [r["weight"] for r in recs],
                           work, [clock])
    trainer.args.eval_strategy = "no"  # the stage's end-of-run eval is not training (~26 s a run)
    return trainer


def ours_lengths(trainer) -> list[int]:
    """Real tokens of every packed row of the epoch, in the order the trainer takes them."""
    examples, cap = trainer.data_collator.examples, trainer.data_collator.seq_len
    return [min(cap, sum(len(examples[i]["input_ids"]) for i in row)) for row in trainer.train_dataset]


def trl_lengths(trainer) -> list[int]:
    """Token counts of every tokenized record in a seeded shuffle (what a random sampler draws)."""
    import random

    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    random.Random(trainer.args.seed).shuffle(lengths)
    return lengths


def epoch_efficiency(lengths: list[int], batch: int) -> float:
    """Padding efficiency over a whole epoch: real tokens / (batch size x longest in batch)."""
    batches = [lengths[i: i + batch] for i in range(0, len(lengths), batch)]
    return sum(lengths) / sum(len(b) * max(b) for b in batches)


def baseline(cfg, tok, data: Path, work: Path, clock):
    """SFTTrainer on the messages column; only what is not about batching is set to match ours."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from counting import CountsPaddedTokens
    from voicetune.stages.train.trainer import training_args

    class CountingSFTTrainer(CountsPaddedTokens, SFTTrainer):
        """SFTTrainer unchanged, except that it counts real (attention_mask=1) and computed tokens."""

    ref = training_args(cfg, work, steps_per_epoch=cfg.train.max_steps, wandb=False)
    args = SFTConfig(
        output_dir=str(work / "trl"), max_length=cfg.train.seq_len, per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=1, max_steps=cfg.train.max_steps, learning_rate=ref.learning_rate,
        lr_scheduler_type=ref.lr_scheduler_type, warmup_steps=ref.warmup_steps, seed=ref.seed,
        # TRL's own defaults turn on gradient checkpointing and bf16 autocast: both change the cost
        # of a token, not the batching under test, so they match ours (off on CPU).
        gradient_checkpointing=False, bf16=False, use_cpu=True, logging_steps=1, save_strategy="no",
        report_to=[], dataloader_num_workers=0, assistant_only_loss=False)
    records = [{"messages": r["messages"]} for r in read_jsonl(data / "train.jsonl")]
    return CountingSFTTrainer(model=fresh_model(cfg), args=args, train_dataset=Dataset.from_list(records),
                              processing_class=tok, callbacks=[clock])


def measure(build, lengths, cfg, tok, data: Path) -> dict:
    """One run: build a trainer (not timed), train, and return the timed steps' figures."""
    import gc

    clock = make_clock()
    with tempfile.TemporaryDirectory() as work:
        trainer = build(cfg, tok, data, Path(work), clock)
        clock.trainer = trainer
        epoch = epoch_efficiency(lengths(trainer), cfg.train.batch_size)
        trainer.train()
    (t0, real0, comp0), (t1, real1, comp1) = clock.marks
    del trainer
    gc.collect()
    real, computed, seconds = real1 - real0, comp1 - comp0, t1 - t0
    return {"steps": cfg.train.max_steps - WARMUP_STEPS, "real": real, "computed": computed,
            "efficiency": real / computed, "epoch_efficiency": epoch, "seconds": seconds,
            "tok_s": real / seconds, "computed_tok_s": computed / seconds}


def rounds(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Alternate the contenders round by round; each run in the same process, one after the other."""
    from voicetune.chat import load_tokenizer

    data = dataset_dir(args.cache)
    cfg = train_cfg(args)
    tok = load_tokenizer(cfg.model, Cache(cfg.cache_dir))
    runs: dict[str, list[dict]] = {OURS: [], TRL: []}
    for i in range(args.rounds):
        for name, build, lengths in ((OURS, ours, ours_lengths), (TRL, baseline, trl_lengths)):
            runs[name].append(measure(build, lengths, cfg, tok, data))
            r = runs[name][-1]
            print(f"round {i + 1} {name}: {r['tok_s']:.1f} real tok/s, efficiency {r['efficiency']:.3f}",
                  file=sys.stderr, flush=True)
    return runs


def summary(runs: dict[str, list[dict]]) -> dict:
    """Best run per contender, and the ratio of each round's pair (adjacent in time, so under similar load)."""
    best = {name: max(rs, key=lambda r: r["tok_s"]) for name, rs in runs.items()}
    paired = [o["tok_s"] / b["tok_s"] for o, b in zip(runs[OURS], runs[TRL])]
    return {"best": best, "speedup_best": best[OURS]["tok_s"] / best[TRL]["tok_s"],
            "speedup_rounds": paired, "speedup_median": statistics.median(paired)}


def table(runs: dict[str, list[dict]], s: dict) -> str:
    """Markdown: the best run per contender, every run, and the goal check lines."""
    head = ["| contender | timed steps | real tokens | computed tokens | padding efficiency | "
            "epoch padding efficiency | computed tok/s | real tok/s | vs baseline |", "|---" * 9 + "|"]
    base = s["best"][TRL]["tok_s"]
    lines = head + [_row(name, r, r["tok_s"] / base) for name, r in s["best"].items()]
    lines += ["", "Every run, in the order it ran (seconds = the timed steps):", "",
              "| round | contender | seconds | real tok/s | padding efficiency |", "|---" * 5 + "|"]
    for i in range(len(runs[OURS])):
        lines += [f"| {i + 1} | {name} | {rs[i]['seconds']:.1f} | {rs[i]['tok_s']:.1f} | {rs[i]['efficiency']:.3f} |"
                  for name, rs in runs.items()]
    ours = s["best"][OURS]
    eff = min(ours["efficiency"], ours["epoch_efficiency"])
    per_round = ", ".join(f"{x:.2f}" for x in s["speedup_rounds"])
    trl = s["best"][TRL]
    lines += ["", f"- real tok/s ratio, best vs best: {s['speedup_best']:.2f}x; per round: {per_round} "
                  f"(median {s['speedup_median']:.2f}x)",
              f"- best vs best = padding efficiency ratio {ours['efficiency'] / trl['efficiency']:.2f}x "
              f"(whole epoch: {ours['epoch_efficiency'] / trl['epoch_efficiency']:.2f}x) x computed tok/s ratio "
              f"{ours['computed_tok_s'] / trl['computed_tok_s']:.2f}x",
              f"- goal real tok/s >= {GOAL_SPEEDUP}x baseline: {s['speedup_median']:.2f}x (median of rounds) -> "
              f"{'met' if s['speedup_median'] >= GOAL_SPEEDUP else 'NOT met'}",
              f"- goal padding efficiency >= {GOAL_EFFICIENCY}: {ours['efficiency']:.3f} timed steps, "
              f"{ours['epoch_efficiency']:.3f} whole epoch -> {'met' if eff >= GOAL_EFFICIENCY else 'NOT met'}"]
    return "\n".join(lines)


def _row(name: str, r: dict, ratio: float) -> str:
    return (f"| {name} | {r['steps']} | {r['real']:,} | {r['computed']:,} | {r['efficiency']:.3f} | "
            f"{r['epoch_efficiency']:.3f} | {r['computed_tok_s']:.1f} | {r['tok_s']:.1f} | {ratio:.2f}x |")


def main(argv: list[str] | None = None) -> dict:
    """Run the rounds, print the table, write results unless --quick."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed optimizer steps per run (after 1 warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per contender, interleaved")
    parser.add_argument("--batch", type=int, default=4, help="rows (ours) / sequences (TRL) per step")
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "out" / "cache")
    parser.add_argument("--quick", action="store_true", help="1 timed step, 1 round; no file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.rounds = 1, 1
    args.cache = args.cache.resolve()
    load = [os.getloadavg()[0]]
    runs = rounds(args)
    load.append(os.getloadavg()[0])
    s = summary(runs)
    text = table(runs, s)
    print(text)
    if not args.quick:
        write_results(text, load, args)
    return s


def write_results(text: str, load: list[float], args: argparse.Namespace) -> None:
    """bench/results/train.md: date, machine and its load, versions, command, tables, notes."""
    libs = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "peft", "trl"))
    command = f".venv/bin/python bench/train.py --steps {args.steps} --rounds {args.rounds}"
    RESULTS.write_text(
        f"# train bench\n\n`{command}`\n\n- date: {datetime.date.today().isoformat()}\n"
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {libs}; 1-minute load average {load[0]:.1f} before, "
        f"{load[1]:.1f} after (other jobs share the machine)\n"
        f"- setup: shape_mix of the demo corpus, SmolLM2-135M fp32, LoRA r16/alpha32 q/k/v/o, "
        f"batch {args.batch}, seq_len {args.seq_len}, 1 warm-up + {args.steps} timed steps per run, "
        f"{args.rounds} rounds interleaved\n\n{text}\n\n{NOTES}")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


NOTES = """What is measured. Real tokens are non-padding tokens (ours: the packed rows' own tokens;
TRL: attention_mask = 1); computed tokens are batch x padded width of every batch the model ran.
The clock runs from the end of the warm-up step to the end of the last step, so it holds the
forward, backward, optimizer and logging of every timed step, and not the model load, TRL's
tokenization or trainer set-up. "epoch padding efficiency" is the same ratio over a whole epoch
from token counts alone: ours over the packed rows in the order the trainer takes them, TRL over
its tokenized records in a seeded shuffle (what a random sampler draws; not torch's exact
permutation). The timed steps see only a few batches, so their efficiency is a sample of it.

Reading the ratio. real tok/s ratio = padding efficiency ratio x computed tok/s ratio. The
first factor is the design: BFD rows fill ~96% of their width over the epoch, random batches of
4 records of 188-941 tokens (median 388) ~66%, so packing alone is worth ~1.45x here. The
second factor is the per-token cost of each trainer on this CPU: ours runs the model's own loss
over full logits; TRL 1.16 runs its fused LM head (in tiles; on CPU it still projects every
position, pads included) and also computes entropy and top-1 accuracy for its logs. Ours pays
attention over whole 1,024-token rows (SDPA on CPU computes the masked blocks of the
block-diagonal mask too), TRL over ~350-940-token batches; which of these makes the second
factor favour ours was not profiled.

Same for both: the shape_mix train split, SmolLM2-135M fp32, the LoRA group, AdamW, lr 5e-4
with the `cpu_tiny` schedule, batch 4, seq_len 1024, 1 + N optimizer steps, no eval inside the
timed steps. Different by design: ours draws records by section weight and packs ~4 records
into each row (~4,000 real tokens per step); TRL takes 4 records per step (~2,000), so the
comparison is per second, not per step. TRL's labels cover every token (assistant_only_loss is
off by default, and on with SmolLM2's stock template it fails); ours train the reply and its
end token. That changes the loss, not the compute. TRL's own defaults also switch on gradient
checkpointing and bf16 autocast; both change the cost of a token, not batching, so both are
off here as in our CPU trainer.

Limits. One shared 2-core CPU (the load average above is other jobs; steps took ~3x longer
than on an idle machine, see DESIGN), a 135M model in fp32, a few steps per run: absolute
tokens/s mean little, and the per-round ratios (each pair run back to back) are the figure to
read. On a GPU the attention and LM-head shares differ. The GPU reference in DESIGN (one H100,
seed-like lengths with 15% of ~2,700-token records): random padded batches 2,633 real tok/s at
padding efficiency 0.553, packed rows 6,494 (2.47x), packed with flex attention 7,823 (2.97x).
Our demo data is narrower (no record over 941 tokens), so random batches waste less (~0.66) and
the padding share of the gain is smaller than there.
"""

if __name__ == "__main__":
    main()
