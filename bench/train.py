"""Claim: packed rows train at least the real tokens/s of TRL SFTTrainer's own BFD packing, at padding efficiency >= 0.95.

Three contenders on the same SmolLM2-135M fp32, LoRA (r16 alpha32 q/k/v/o, dropout 0.05),
optimizer, lr schedule, batch 4, seq_len 1024 and number of optimizer steps, all fed the same
weighted draws of the shape_mix dataset (built by the pipeline from the demo corpus):
- ours: `make_trainer` (BFD-packed rows, restarting position_ids, no attention mask);
- the strongest baseline, TRL packed: `SFTTrainer` with `packing=True, packing_strategy="bfd",
  padding_free=True` on our encoded examples (same tokens, same labels), drawn by the same
  `weighted_schedule`; TRL packs them into rows with its own BFD and flattens each batch into one
  row with restarting position_ids;
- the second baseline, TRL defaults: `SFTTrainer` on the drawn records' `messages` with TRL's
  data defaults (no packing, random batches padded to their longest sequence).
The contenders alternate (ours, TRL packed, TRL defaults, ours, ...) so that load from other jobs
hits all; every run loads a fresh model, takes one warm-up step, and times the steps after it.
Before the first TRL packed run, its first two packed rows go through the model together and
each sequence alone: the logits must agree (no sequence sees another).

    .venv/bin/python bench/train.py            # 3 timed steps x 2 rounds (~50 min at load 5), writes results
    .venv/bin/python bench/train.py --steps 1  # 1 timed step x 2 rounds (26 min at load 4-7)
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
OURS, TRL_PACKED, TRL = "voicetune packed", "TRL SFTTrainer packed (bfd, padding-free)", "TRL SFTTrainer defaults"
BASELINES = (TRL_PACKED, TRL)  # the first is the strongest: the claim is stated against it
GOAL_SPEEDUP, GOAL_EFFICIENCY = 1.0, 0.95
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


def encoded(cfg, tok, path: Path) -> tuple[list[dict], list[dict]]:
    """Examples as the train stage encodes them (labels on the reply and its end token), and their records."""
    examples, recs, _ = encode_records(read_jsonl(path), tok, end_tokens(cfg.model, tok), cfg.train.seq_len)
    return examples, recs


def draws(cfg, recs: list[dict]) -> list[int]:
    """The example indices make_trainer draws by weight (same weights, epochs and seed)."""
    from voicetune.packing import weighted_schedule

    return weighted_schedule([r["weight"] for r in recs], cfg.train.epochs, cfg.train.seed)


def ours(cfg, tok, data: Path, work: Path, clock):
    """make_trainer exactly as the train stage builds it, on the same weighted, packed rows."""
    from voicetune.stages.train.trainer import make_trainer

    train_ex, recs = encoded(cfg, tok, data / "train.jsonl")
    valid_ex, _ = encoded(cfg, tok, data / "valid.jsonl")
    valid_ex = valid_ex[:4]
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


def trl_packed_lengths(trainer) -> list[int]:
    """Real tokens of every packed row TRL built (the sum of its sequences' lengths)."""
    return [sum(seqs) for seqs in trainer.train_dataset["seq_lengths"]]


def epoch_efficiency(lengths: list[int], batch: int, flat: bool = False) -> float:
    """Padding efficiency over a whole epoch: real tokens / (batch size x longest in batch).

    flat: TRL's padding-free collator concatenates a batch into one row, so its width is the sum.
    """
    batches = [lengths[i: i + batch] for i in range(0, len(lengths), batch)]
    return sum(lengths) / sum(sum(b) if flat else len(b) * max(b) for b in batches)


def sft_trainer(cfg, tok, work: Path, clock, dataset, **batching):
    """SFTTrainer (counting real and computed tokens); only what is not about batching is set to match ours."""
    from trl import SFTConfig, SFTTrainer

    from counting import CountsPaddedTokens
    from voicetune.stages.train.trainer import training_args

    class CountingSFTTrainer(CountsPaddedTokens, SFTTrainer):
        """SFTTrainer unchanged, except that it counts real and computed tokens."""

    ref = training_args(cfg, work, steps_per_epoch=cfg.train.max_steps, wandb=False)
    args = SFTConfig(
        output_dir=str(work / "trl"), max_length=cfg.train.seq_len, per_device_train_batch_size=cfg.train.batch_size,
        gradient_accumulation_steps=1, max_steps=cfg.train.max_steps, learning_rate=ref.learning_rate,
        lr_scheduler_type=ref.lr_scheduler_type, warmup_steps=ref.warmup_steps, seed=ref.seed,
        # TRL's own defaults turn on gradient checkpointing and bf16 autocast: both change the cost
        # of a token, not the batching under test, so they match ours (off on CPU).
        gradient_checkpointing=False, bf16=False, use_cpu=True, logging_steps=1, save_strategy="no",
        report_to=[], dataloader_num_workers=0, assistant_only_loss=False, **batching)
    return CountingSFTTrainer(model=fresh_model(cfg), args=args, train_dataset=dataset, processing_class=tok,
                              callbacks=[clock])


def trl_packed(cfg, tok, data: Path, work: Path, clock):
    """SFTTrainer with its own BFD packing, padding-free, on our encoded examples in our weighted draws.

    Pre-tokenized rows with a `labels` column are used as they are (TRL keeps given labels), so
    both trainers see the same tokens and train the same positions.
    """
    from datasets import Dataset

    examples, recs = encoded(cfg, tok, data / "train.jsonl")
    rows = [{"input_ids": examples[i]["input_ids"], "labels": examples[i]["labels"]} for i in draws(cfg, recs)]
    return sft_trainer(cfg, tok, work, clock, Dataset.from_list(rows),
                       packing=True, packing_strategy="bfd", padding_free=True)


def trl_defaults(cfg, tok, data: Path, work: Path, clock):
    """SFTTrainer with TRL's data defaults on the messages of the same weighted draws (TRL tokenizes them)."""
    from datasets import Dataset

    _, recs = encoded(cfg, tok, data / "train.jsonl")
    rows = [{"messages": recs[i]["messages"]} for i in draws(cfg, recs)]
    return sft_trainer(cfg, tok, work, clock, Dataset.from_list(rows))


def isolation_gap(trainer, rows: int = 2) -> dict:
    """Max |logit difference| of TRL's packed batch vs each sequence alone, and with a plain causal mask.

    The `rows` packed rows holding the most sequences go through TRL's own collator (one flattened
    row with restarting position_ids, as in training); TRL's first rows hold one long sequence each.
    The causal-mask figure shows what a leak would look like.
    """
    import torch

    counts = [len(seqs) for seqs in trainer.train_dataset["seq_lengths"]]
    features = [trainer.train_dataset[i] for i in sorted(range(len(counts)), key=lambda i: -counts[i])[:rows]]
    batch = {k: v for k, v in trainer.data_collator(features).items() if k != "labels"}
    ids = batch["input_ids"][0]
    lengths = [n for f in features for n in f["seq_lengths"]]
    model = trainer.model.eval()
    with torch.no_grad():
        packed = model(**batch, use_cache=False).logits[0]
        leaky = model(input_ids=batch["input_ids"], attention_mask=torch.ones_like(batch["input_ids"]),
                      position_ids=batch["position_ids"], use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=seq[None], use_cache=False).logits[0] for seq in ids.split(lengths)])
    model.train()
    return {"sequences": len(lengths), "tokens": len(ids), "gap": float((packed - alone).abs().max()),
            "leak": float((leaky - alone).abs().max())}


def measure(build, lengths, cfg, tok, data: Path, checks: dict) -> dict:
    """One run: build a trainer (not timed), train, and return the timed steps' figures."""
    import gc

    clock = make_clock()
    with tempfile.TemporaryDirectory() as work:
        trainer = build(cfg, tok, data, Path(work), clock)
        clock.trainer = trainer
        flat = build is trl_packed
        epoch = epoch_efficiency(lengths(trainer), cfg.train.batch_size, flat=flat)
        if flat and "isolation" not in checks:
            checks["isolation"] = isolation_gap(trainer)
        trainer.train()
    (t0, real0, comp0), (t1, real1, comp1) = clock.marks
    del trainer
    gc.collect()
    real, computed, seconds = real1 - real0, comp1 - comp0, t1 - t0
    steps = cfg.train.max_steps - WARMUP_STEPS
    return {"steps": steps, "real": real, "computed": computed, "real_per_step": real / steps,
            "efficiency": real / computed, "epoch_efficiency": epoch, "seconds": seconds,
            "tok_s": real / seconds, "computed_tok_s": computed / seconds}


CONTENDERS = ((OURS, ours, ours_lengths), (TRL_PACKED, trl_packed, trl_packed_lengths),
              (TRL, trl_defaults, trl_lengths))


def rounds(args: argparse.Namespace) -> tuple[dict[str, list[dict]], dict]:
    """Alternate the contenders round by round; each run in the same process, one after the other."""
    from voicetune.chat import load_tokenizer

    data = dataset_dir(args.cache)
    cfg = train_cfg(args)
    tok = load_tokenizer(cfg.model, Cache(cfg.cache_dir))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in CONTENDERS}
    checks: dict = {}
    for i in range(args.rounds):
        for name, build, lengths in CONTENDERS:
            runs[name].append(measure(build, lengths, cfg, tok, data, checks))
            r = runs[name][-1]
            print(f"round {i + 1} {name}: {r['tok_s']:.1f} real tok/s, efficiency {r['efficiency']:.3f}",
                  file=sys.stderr, flush=True)
    return runs, checks


def summary(runs: dict[str, list[dict]]) -> dict:
    """Best run per contender, and per baseline the ratio of each round's pair (adjacent in time, so under similar load)."""
    best = {name: max(rs, key=lambda r: r["tok_s"]) for name, rs in runs.items()}
    paired = {b: [o["tok_s"] / x["tok_s"] for o, x in zip(runs[OURS], runs[b])] for b in BASELINES}
    return {"best": best, "speedup_rounds": paired,
            "speedup_median": {b: statistics.median(p) for b, p in paired.items()}}


def table(runs: dict[str, list[dict]], s: dict, checks: dict) -> str:
    """Markdown: the best run per contender, every run, the ratios per round and the goal check lines."""
    strongest = BASELINES[0]
    head = ["| contender | timed steps | real tokens | computed tokens | real tokens/step | padding efficiency | "
            "epoch padding efficiency | computed tok/s | real tok/s | ours vs it |", "|---" * 10 + "|"]
    lines = head + [_row(name, r, s["best"][OURS]["tok_s"] / r["tok_s"]) for name, r in s["best"].items()]
    lines += ["", "Every run, in the order it ran (seconds = the timed steps; ratio = ours / it, same round):", "",
              "| round | contender | seconds | real tok/s | padding efficiency | ours vs it |", "|---" * 6 + "|"]
    for i in range(len(runs[OURS])):
        for name, rs in runs.items():
            ratio = f"{s['speedup_rounds'][name][i]:.2f}x" if name in BASELINES else "-"
            lines.append(f"| {i + 1} | {name} | {rs[i]['seconds']:.1f} | {rs[i]['tok_s']:.1f} | "
                         f"{rs[i]['efficiency']:.3f} | {ratio} |")
    ours = s["best"][OURS]
    eff = min(ours["efficiency"], ours["epoch_efficiency"])
    lines.append("")
    for b in BASELINES:
        per_round = ", ".join(f"{x:.2f}" for x in s["speedup_rounds"][b])
        other = s["best"][b]
        lines += [f"- ours / {b}, real tok/s per round: {per_round} (median {s['speedup_median'][b]:.2f}x); "
                  f"best vs best = padding efficiency ratio {ours['efficiency'] / other['efficiency']:.2f}x "
                  f"x computed tok/s ratio {ours['computed_tok_s'] / other['computed_tok_s']:.2f}x"]
    iso = checks.get("isolation")
    if iso:
        lines.append(f"- TRL packed isolation: {iso['sequences']} sequences in one flattened row of {iso['tokens']:,} "
                     f"tokens vs each alone, max |logit difference| {iso['gap']:.1e} "
                     f"(with a plain causal mask instead: {iso['leak']:.1f})")
    median = s["speedup_median"][strongest]
    lines += [f"- goal real tok/s >= {GOAL_SPEEDUP}x the strongest baseline ({strongest}): {median:.2f}x "
              f"(median of rounds) -> {'met' if median >= GOAL_SPEEDUP else 'NOT met'}",
              f"- goal padding efficiency >= {GOAL_EFFICIENCY}: {ours['efficiency']:.3f} timed steps, "
              f"{ours['epoch_efficiency']:.3f} whole epoch -> {'met' if eff >= GOAL_EFFICIENCY else 'NOT met'}"]
    return "\n".join(lines)


def _row(name: str, r: dict, ratio: float) -> str:
    return (f"| {name} | {r['steps']} | {r['real']:,} | {r['computed']:,} | {r['real_per_step']:,.0f} | "
            f"{r['efficiency']:.3f} | {r['epoch_efficiency']:.3f} | {r['computed_tok_s']:.1f} | {r['tok_s']:.1f} | "
            f"{ratio:.2f}x |")


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
    runs, checks = rounds(args)
    load.append(os.getloadavg()[0])
    s = summary(runs)
    text = table(runs, s, checks)
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
        f"- setup: shape_mix of the demo corpus (the same weighted draws for all three), SmolLM2-135M fp32, "
        f"LoRA r16/alpha32 q/k/v/o, batch {args.batch}, seq_len {args.seq_len}, 1 warm-up + {args.steps} timed "
        f"steps per run, {args.rounds} rounds interleaved (ours, TRL packed, TRL defaults, ours, ...)\n\n"
        f"{text}\n\n{NOTES}")


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else the architecture."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), platform.machine())


NOTES = """What is measured. Real tokens are non-padding tokens (ours: the packed rows' own tokens;
TRL defaults: attention_mask = 1; TRL packed: every position, since its padding-free collator
concatenates a batch into one row and pads nothing on CPU); computed tokens are batch x padded
width of every batch the model ran. The clock runs from the end of the warm-up step to the end
of the last step, so it holds the forward, backward, optimizer and logging of every timed step,
and not the model load, TRL's tokenization or packing, or trainer set-up. "epoch padding
efficiency" is the same ratio over a whole epoch from token counts alone: ours over the packed
rows in the order the trainer takes them, TRL packed over its rows (1 by construction: no
padding), TRL defaults over its tokenized draws in a seeded shuffle (what a random sampler
draws; not torch's exact permutation).

Same data for all three: the draws make_trainer makes (`weighted_schedule`: 498 draws with
replacement, in proportion to section weight, same seed). Ours and TRL packed get the same
tokens and labels: our encoded examples (labels on the reply and its end token) go to TRL as
`input_ids` + `labels`, which TRL keeps as given; TRL packs them with its own BFD (one Arrow
batch of up to 1,000 draws, here the whole epoch) and samples the rows at random; ours packs
per epoch and shuffles the rows. Both make 242 rows of the 498 draws (filled 0.953 TRL, 0.956
ours). TRL defaults gets the drawn records' `messages`, tokenizes them with the chat template
and trains every token (its default); it takes 4 records per step (~1,500-2,000 real tokens)
where the packers take ~4,000, so the comparison is per second, not per step.

Isolation. TRL's padding-free batches carry no attention mask and position_ids that restart
per sequence (and cu_seq_lens for varlen kernels, which SDPA does not read); transformers 5
builds the block-diagonal causal mask from the restarts, the same mechanism ours uses. The
bench checks it on the trainer's own rows before the first TRL packed run: logits of the
flattened batch against each sequence alone; the same batch with a plain causal mask shows the
size of a leak. TRL also drops the label of each sequence's first token (ours: that token is
prompt and unlabelled anyway).

Reading the ratio. real tok/s ratio = padding efficiency ratio x computed tok/s ratio. Against
TRL packed the first factor is ~1 (both BFD over the same draws; ours pads each batch to its
longest row, 0.955; TRL pads nothing), so any difference is the cost per token on this CPU.
Candidates, not profiled: padding-free joins the 4 rows into one row of ~4,100 tokens, and SDPA
on CPU has no varlen kernel: it scores the whole 4,096 x 4,096 block-diagonal mask, ~4x the
attention work of ours (4 rows of 1,024), which for a 135M model (30 layers, width 576) at 4k
tokens is of the order of its linear layers; and TRL's fused LM head with its entropy and
accuracy metrics. With FlashAttention's varlen kernel on a GPU (what TRL's padding-free is built
for) the first cost goes away, so this CPU ratio does not predict a GPU. Against TRL defaults
the first factor is the design: BFD rows fill ~96% of their width, random batches of 4 records
of 188-941 tokens ~66%.

Same for all: SmolLM2-135M fp32 (use_cache off), the LoRA group, AdamW, lr 5e-4 with the
`cpu_tiny` schedule, batch 4, seq_len 1024, 1 + N optimizer steps, no eval inside the timed
steps; TRL's own defaults of gradient checkpointing and bf16 autocast are off, as in our CPU
trainer (they change the cost of a token, not batching).

Limits. One shared 2-core CPU (the load average above is other jobs), a 135M model in fp32, a
few steps per run: absolute tokens/s mean little, and the per-round ratios (runs back to back)
are the figure to read; with one timed step per run they scatter widely. The GPU reference in
DESIGN (one H100, seed-like lengths with 15% of ~2,700-token records): random padded batches
2,633 real tok/s, packed rows 6,494 (2.47x), packed with flex attention 7,823 (2.97x); TRL's
packing was not measured there.
"""

if __name__ == "__main__":
    main()
