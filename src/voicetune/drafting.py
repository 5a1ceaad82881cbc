"""Rough drafts of units through a generator: requests, the request journal, quality gates.

The `pairs` stage drafts every unit in every rough style; `heldout` and `probes` draft one
style per passage. Both go through `make_pairs` here.

Remote replies are appended to a request journal (an fsync'd JSONL line per finished
request) before anything else uses them, so a run killed and rerun does not pay again for a
journaled reply; what it sends again is only a reply that had arrived but was not yet on disk
(the last few ms) and a request that failed or timed out. Such a request ends the stage with one
line saying so, after the others are journaled, so the stage is not cached without it. The
outputs are rebuilt from the journal at the end, so they never hold duplicates.

Each request asks for at most `output_cap` tokens, from its passage: a reply the length gate
would reject anyway no longer runs on to generator.max_output_tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable

from omegaconf import OmegaConf

from voicetune import gates
from voicetune.cache import Cache, digest
from voicetune.errors import DryRun, UserError
from voicetune.generators import make_generator
from voicetune.generators.requests import TRANSIENT, Generator, Reply, Request, estimate_tokens
from voicetune.chat import chat_token_counter, text_token_counter
from voicetune.records import chat_record, read_jsonl, read_split, section_weight, write_jsonl
from voicetune.shapes import build_units

JOURNAL = "pairs-requests"
log = logging.getLogger(__name__)
# A reply the length gate keeps has at most max_length_ratio x the passage's words. Tokens per
# word over the 175 demo-corpus units, SmolLM2's 49k vocabulary: 1.06-1.81, median 1.29 (larger
# vocabularies, gpt-4o's 200k or Llama 3's 128k, count fewer), so 2.0 covers every one; 64 more
# give a one-sentence passage (20 words: 1.6 x 20 x 2.0 = 64 tokens) room for a stray line and
# the end token. A 100-word paragraph asks for 1.6 x 100 x 2.0 + 64 = 384 tokens, not 4,096.
# Words, not the units' token counts: those come from the model being tuned, and a request must
# be the same for every model= so that the journal serves them all.
CAP_TOKENS_PER_WORD, CAP_EXTRA = 2.0, 64


@dataclass(frozen=True)
class Item:
    unit: dict[str, Any]
    style: str
    request: Request


def load_units(folder: Path) -> list[dict[str, Any]]:
    """Units from `<folder>/units.jsonl`; a bad line or a repeated id is a UserError."""
    path = Path(folder) / "units.jsonl"
    if not path.is_file():
        raise UserError(f"pairs: {path} not found (run the units stage first)")
    units, seen = [], set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            unit = json.loads(line)
            uid, _ = unit["id"], unit["text"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a unit record ({exc})") from None
        if uid in seen:
            raise UserError(f"{path}:{number}: unit id {uid!r} appears twice")
        seen.add(uid)
        units.append(unit)
    return units


def output_cap(text: str, max_length_ratio: float, ceiling: int) -> int:
    """A request's max_tokens: room for the longest reply the length gate keeps, at most `ceiling`."""
    return min(ceiling, math.ceil(len(text.split()) * max_length_ratio * CAP_TOKENS_PER_WORD) + CAP_EXTRA)


def request_fields(gen: Any, template: str, style: Any) -> dict[str, Any]:
    """Everything but the unit's text that changes what the model returns.

    The per-request cap is not among them: it follows from the text, max_output_tokens (both in
    the key) and the gates' max_length_ratio, and only cuts replies the gate rejects, so a reply
    journaled under another cap still stands (`reusable` resends one cut at a smaller cap).
    """
    return {
        "backend": gen.backend, "model": gen.model, "prompt": template, "style": style.name,
        "instruction": style.instruction, "temperature": gen.temperature,
        "max_tokens": gen.max_output_tokens, "seed": gen.seed,
    }


def one_style(styles: list[str], seed: int):
    """A function unit -> the one style it is drafted in: a seeded hash, the same in every stage."""
    return lambda unit: styles[int(digest([seed, unit["id"]]), 16) % len(styles)]


def plan(cfg: Any, units: list[dict[str, Any]], pick=None) -> list[Item]:
    """Every (unit, style) item (or only the style `pick(unit)` names), by unit id then style name."""
    template = cfg.data.prompt
    try:
        template.format(instruction="", text="")
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(f"data.prompt: the template may only use {{instruction}} and {{text}} "
                        f"placeholders ({type(exc).__name__}: {exc})") from None
    # Config read once per style, not per item: an OmegaConf attribute costs ~15 us and a key
    # needs 8 (1,000 items: 0.45 s -> 0.05 s before the first request goes out).
    styles = [(s.name, s.instruction, request_fields(cfg.generator, template, s))
              for s in sorted(cfg.data.rough_styles, key=lambda s: s.name)]
    ratio, ceiling = cfg.data.gates.max_length_ratio, cfg.generator.max_output_tokens
    items = []
    for unit in sorted(units, key=lambda u: u["id"]):
        cap = output_cap(unit["text"], ratio, ceiling)
        for name, instruction, fields in styles:
            if pick is not None and pick(unit) != name:
                continue
            prompt = template.format(instruction=instruction, text=unit["text"])
            key = digest({**fields, "text": unit["text"]})  # the request's content address
            items.append(Item(unit, name, Request(key, unit["id"], name, unit["text"], prompt, cap)))
    return items


def reusable(reply: Reply | None, request: Request) -> bool:
    """A journaled reply stands unless it was cut (finish_reason=length) at a smaller cap than now.

    Journals from before per-passage caps hold no cap: theirs was max_output_tokens, in the key.
    """
    if reply is None:
        return False
    return reply.finish_reason != "length" or reply.max_tokens is None or reply.max_tokens >= request.max_tokens


class Journal:
    """Append-only JSONL of finished requests; a torn last line (kill -9) is skipped.

    `append` returns once the line is fsync'd. The write and fsync (~2-4 ms on this disk)
    run in a worker thread, so the event loop keeps sending and reading meanwhile, and lines
    that finish during one fsync share the next (group commit): 1,000 fsyncs on the loop
    were 2-4 s of a 20 s run in which nothing else moved.
    """

    def __init__(self, path: Path):
        self.path = path
        self.file = None
        self.pending: list[bytes] = []
        self.queued = self.synced = 0  # lines handed to append() / lines known on disk
        self.lock = asyncio.Lock()

    def load(self) -> dict[str, Reply]:
        replies: dict[str, Reply] = {}
        if not self.path.exists():
            return replies
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                replies[record["key"]] = Reply(**record["reply"])
            except (ValueError, KeyError, TypeError):
                continue
        return replies

    async def append(self, key: str, request: Request, reply: Reply) -> None:
        """Journal one finished request; returns once its line is on disk."""
        record = {"key": key, "unit_id": request.unit_id, "style": request.style,
                  "reply": reply.record(), "time": time.time()}
        self.pending.append((json.dumps(record, ensure_ascii=False) + "\n").encode())
        self.queued += 1
        mine = self.queued
        async with self.lock:
            if self.synced >= mine:
                return  # an earlier caller's batch carried this line
            batch, self.pending = self.pending, []
            await asyncio.to_thread(self._write, b"".join(batch))
            self.synced += len(batch)

    def _write(self, data: bytes) -> None:
        if self.file is None:
            self.file = open(self.path, "ab")
            # A line torn by kill -9 has no newline: start on a fresh line so it stays alone.
            if self.file.tell() and _last_byte(self.path) != b"\n":
                self.file.write(b"\n")
        self.file.write(data)
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


class Judge:
    """Why an item is not a pair (an error kind or a gate), or None; once per request key.

    The gates cost ~0.3 ms an item (number sets, a similarity bound): judged as each reply
    arrives, 1,000 items no longer add 0.3 s after the last reply.
    """

    def __init__(self, gate_cfg: Any):
        # Plain attributes: the gates read 7 settings per item, ~15 us each from OmegaConf.
        self.gates = (SimpleNamespace(**OmegaConf.to_container(gate_cfg, resolve=True))
                      if OmegaConf.is_config(gate_cfg) else gate_cfg)
        self.verdicts: dict[str, gates.Verdict | None] = {}

    def __call__(self, item: Item, reply: Reply) -> gates.Verdict | None:
        key = item.request.key  # same key: same text, style and reply, so the same verdict
        if key not in self.verdicts:
            self.verdicts[key] = (gates.Verdict(reply.error, reply.detail) if reply.error else
                                  gates.evaluate(item.unit["text"], reply.content,
                                                 reply.finish_reason, self.gates))
        return self.verdicts[key]


def make_pairs(cfg: Any, units: list[dict[str, Any]], cache: Cache, out: Path, pick=None) -> dict[str, Any]:
    """Build pairs.jsonl, rejected.jsonl and stats.json in `out`; return the stats."""
    start = time.monotonic()
    items = plan(cfg, units, pick)
    journal = Journal(cache.journal(JOURNAL))
    remote = cfg.generator.backend != "offline"
    cached = journal.load() if remote else {}
    todo = [item for item in items if not reusable(cached.get(item.request.key), item.request)]
    if cfg.generator.dry_run:
        raise DryRun(dry_run_message(cfg.generator, todo, len(items)))
    generator, judge = make_generator(cfg.generator), Judge(cfg.data.gates)
    try:
        fresh = asyncio.run(send_all(generator, todo, journal, cfg.generator.concurrency, judge))
    finally:
        journal.close()
    unsent = [item for item in todo if fresh[item.request.key].error in TRANSIENT]
    for item in unsent:
        log.info("%s/%s not answered: %s", item.unit["id"], item.style, fresh[item.request.key].detail)
    if unsent:
        raise UserError(unsent_message(cfg.generator, unsent, fresh, len(items)))
    stats = write_outputs(cfg, items, {**cached, **fresh}, judge, out)
    stats.update(usage_stats(cfg.generator, fresh.values(), remote))
    stats.update(calls_planned=len(items), served_from_cache=len(items) - len(todo),
                 requests_sent=len(fresh), resends=sum(r.sends - 1 for r in fresh.values()),
                 seconds=round(time.monotonic() - start, 2))
    (Path(out) / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(summary(stats))
    return stats


async def send_all(generator: Generator, todo: list[Item], journal: Journal, concurrency: int,
                   judge: Judge) -> dict[str, Reply]:
    """Send every request with bounded concurrency; a UserError cancels the rest."""
    from tqdm import tqdm

    semaphore, replies, seen = asyncio.Semaphore(concurrency), {}, Counter()
    progress = tqdm(total=len(todo), desc="pairs", unit="req", disable=not todo)

    async def one(item: Item) -> None:
        async with semaphore:
            reply = await generator.complete(item.request)
        # Transient failures are not journaled, so a rerun retries them.
        if generator.remote and reply.error not in TRANSIENT:
            await journal.append(item.request.key, item.request, reply)
        replies[item.request.key] = reply
        judge(item, reply)  # now, while other requests are in flight, not after the last one
        seen["resent"] += reply.sends - 1
        if reply.error in TRANSIENT:
            seen[reply.error] += 1
        shown = [f"{k.replace('_', ' ')} {v}" for k, v in sorted(seen.items()) if v]
        if shown:  # on the bar, not as lines between its updates (the details are in run.log)
            progress.set_postfix_str(", ".join(shown), refresh=False)
        progress.update()

    fatal = None
    try:
        async with asyncio.TaskGroup() as group:
            for item in todo:
                group.create_task(one(item))
    except* UserError as errors:
        fatal = errors.exceptions[0]
    finally:
        progress.close()
        await generator.aclose()
    if fatal is not None:
        raise fatal
    return replies


def write_outputs(cfg: Any, items: list[Item], replies: dict[str, Reply], judge: Judge,
                  out: Path) -> dict[str, Any]:
    """pairs.jsonl and rejected.jsonl in item order; counts for stats.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = cfg.generator.model
    pairs, rejected = [], []
    for item in items:
        reply, unit = replies[item.request.key], item.unit
        where = {"paper": unit.get("paper"), "section": unit.get("section"),
                 "shape": unit.get("shape"), "style": item.style}
        verdict = judge(item, reply)
        if verdict:
            rejected.append({"unit_id": unit["id"], **where, "reason": verdict.reason,
                             "detail": verdict.detail, "rough": reply.content})
            continue
        pairs.append({"id": f"{unit['id']}/{item.style}", "unit_id": unit["id"], **where,
                      "kind": "depolish", "rough": reply.content, "original": unit["text"],
                      "words_rough": len(reply.content.split()),
                      "words_original": len(unit["text"].split()),
                      "generator": model})
    write_jsonl(out / "pairs.jsonl", pairs)
    write_jsonl(out / "rejected.jsonl", rejected)
    reasons = Counter(r["reason"] for r in rejected)
    return {"pairs": len(pairs), "rejected": len(rejected), "rejected_by_reason": dict(reasons)}


def draft_records(cfg: Any, units: list[dict[str, Any]], cache: Cache, tokenizer, out: Path) -> list[dict]:
    """One rough draft per unit (a seeded style each) as chat records, by shape and id.

    The same unit gets the same style in every stage, so a passage drafted for the probe panel and
    for the held-out set is one request: a remote generator is paid once.
    """
    styles = sorted(s.name for s in cfg.data.rough_styles)
    make_pairs(cfg, units, cache, out, pick=one_style(styles, cfg.data.seed))
    count, weights = chat_token_counter(tokenizer), dict(cfg.data.section_weights)
    pairs = sorted(read_jsonl(out / "pairs.jsonl"), key=lambda p: (p["shape"], p["id"]))
    return [chat_record(p, cfg.corpus.persona, cfg.data.instruction, section_weight(p["section"], weights), count)
            for p in pairs]


def held_out_drafts(ctx, wants: dict[str, int]) -> list[dict]:
    """Chat records for up to `wants[shape]` passages of each shape from the papers the split holds
    out, one rough style each."""
    valid = read_split(ctx.inputs["split"])["valid"]
    papers = [p for p in read_jsonl(ctx.inputs["extract"] / "papers.jsonl") if p["id"] in valid]
    tok = ctx.tokenizer()
    units, _, _ = build_units(ctx.cfg, papers, chat_token_counter(tok), text_token_counter(tok), wants)
    return draft_records(ctx.cfg, units, ctx.cache, tok, ctx.out)


def usage_stats(gen: Any, replies: Iterable[Reply], remote: bool) -> dict[str, Any]:
    """Tokens and dollars for the requests sent by this run."""
    replies = list(replies)
    prompt = sum(r.prompt_tokens for r in replies)
    completion = sum(r.completion_tokens for r in replies)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "tokens_estimated": not remote, "cost_usd": round(cost(gen, prompt, completion), 4)}


def cost(gen: Any, prompt_tokens: float, completion_tokens: float) -> float:
    """USD at the configured per-million-token prices."""
    return (prompt_tokens * gen.price_input_per_1m
            + completion_tokens * gen.price_output_per_1m) / 1e6


def dry_run_message(gen: Any, todo: list[Item], planned: int) -> str:
    """What the uncached calls would cost: words x 1.35 tokens in and out."""
    prompt = sum(estimate_tokens(item.request.prompt) for item in todo)
    completion = sum(estimate_tokens(item.request.text) for item in todo)
    dollars = cost(gen, prompt, completion)
    message = (f"pairs dry run: {len(todo):,} of {planned:,} calls not cached; "
               f"~{prompt:,} input + ~{completion:,} output tokens (words x 1.35); "
               f"~${dollars:,.2f} at ${gen.price_input_per_1m}/${gen.price_output_per_1m} "
               f"per 1M tokens with {gen.backend}:{gen.model}; nothing was sent")
    print(message)
    return message


def unsent_message(gen: Any, unsent: list[Item], fresh: dict[str, Reply], planned: int) -> str:
    """One line: how many requests got no reply and why, a few of them, and what a rerun sends."""
    kinds = Counter(fresh[i.request.key].error for i in unsent)
    why = []
    if kinds["timed_out"]:
        why.append(f"{kinds['timed_out']:,} timed out " + (f"{gen.timeout_retries + 1} times" if gen.timeout_retries
                                                           else "and were not resent"))
    if kinds["request_failed"]:
        why.append(f"{kinds['request_failed']:,} failed after {gen.max_retries} resends")
    by_detail: dict[str, list[str]] = {}
    for item in unsent:
        by_detail.setdefault(fresh[item.request.key].detail, []).append(f"{item.unit['id']}/{item.style}")
    shown = "; ".join(f"{names[0]}{f' and {len(names) - 1:,} more' if len(names) > 1 else ''}: {detail}"
                      for detail, names in list(by_detail.items())[:3])
    more = "; the rest in run.log" if len(by_detail) > 3 else ""
    hint = " (a slow server: raise generator.timeout_s)" if kinds["timed_out"] else ""
    return (f"pairs: {len(unsent):,} of {planned:,} requests got no reply ({', '.join(why)}: {shown}{more}); "
            f"the other replies are journaled: rerun to send only these{hint}")


def summary(stats: dict[str, Any]) -> str:
    """One paragraph for the console."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats["rejected_by_reason"].items()))
    estimated = " (estimated)" if stats["tokens_estimated"] else ""
    resent = f" ({stats['resends']:,} resends)" if stats["resends"] else ""
    return (f"pairs: {stats['pairs']:,} of {stats['calls_planned']:,} items accepted, "
            f"{stats['rejected']:,} rejected{f' ({reasons})' if reasons else ''}; "
            f"{stats['served_from_cache']:,} served from cache, {stats['requests_sent']:,} "
            f"requests sent{resent}, {stats['prompt_tokens']:,} prompt + "
            f"{stats['completion_tokens']:,} completion tokens{estimated}, "
            f"${stats['cost_usd']:.2f}; {stats['seconds']:.1f} s.")
