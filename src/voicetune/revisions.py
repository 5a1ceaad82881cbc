"""The author's own edits as training pairs: rough = the text before its tracked changes, polished = after.

Extraction reads every Word file with its changes accepted and records each edited paragraph's
text before them (`papers.jsonl` "revisions"). A unit of any shape but `sentence` that holds an
edited paragraph becomes a revision unit: its rough draft is the unit with those paragraphs as
they were. No generator is asked, so these pairs cost nothing and are the author's own voice
on both sides of an edit (a sentence's edits cannot be placed without aligning sentences, so
sentence units have none).

Gates: an edit of fewer than `data.revisions.min_changed_words` words teaches nothing; the
length ratio applies as for drafts (a pair that doubles the text teaches a length the
instruction forbids). The de-polisher's other gates do not: the author may correct a number
or a citation (numbers kept), an edit leaves most words alone by nature (too similar), the
paragraph count is the unit's own and an author does not refuse.
"""

from __future__ import annotations

import difflib
import re

from voicetune import gates
from voicetune.cache import digest
from voicetune.shapes import Budget, candidates, within_limits

KIND = "revision"
_TOKEN = re.compile(r"\S+|\s+")


def revision_units(paper: dict, shapes) -> list[dict]:
    """Units of `shapes` (not sentence) from one paper that hold an edited paragraph."""
    before_of = {(r["section"], r["after"]): r["before"] for r in paper.get("revisions", [])}
    if not before_of:
        return []
    units = []
    for shape in shapes:
        if shape == "sentence":
            continue
        for unit in candidates(paper, shape):
            paras = unit["text"].split("\n\n")
            rough = [before_of.get((unit["section"], p), p) for p in paras]
            if rough != paras:
                uid = digest([unit["id"], KIND])[:16]  # beside the de-polish unit of the same text
                units.append({**unit, "id": uid, "kind": KIND, "rough": "\n\n".join(rough)})
    return units


def build_revision_units(cfg, papers: list[dict], count_tokens, count_text) -> tuple[list[dict], list[dict]]:
    """Every revision unit of the configured shapes within the word limits and token budget, and the dropped."""
    budget, units, dropped = Budget(cfg, count_tokens, count_text), [], []
    for shape in (s for s, amount in cfg.data.shapes.items() if amount > 0):
        pool = [u for p in papers for u in revision_units(p, [shape])]
        # A section over the budget comes back cut into new units without a before-text: dropped.
        units += [u for u in within_limits(pool, shape, cfg, budget, dropped) if u.get("kind") == KIND]
    return units, dropped


def diff(before: str, after: str) -> list[list[str]]:
    """Word-level edit script [[op, text], ...]: "=" kept, "-" deleted, "+" inserted."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    codes = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    ops, pending = [], ["", ""]  # the current run of changes: deleted text, inserted text
    for n, (tag, i1, i2, j1, j2) in enumerate(codes):
        kept = "".join(a[i1:i2])
        # A lone space between two changes is part of the change: "two short" -> "six long" is one edit.
        inside = 0 < n < len(codes) - 1 and not kept.strip()
        if tag != "equal" or inside:
            pending[0] += kept if tag == "equal" else "".join(a[i1:i2])
            pending[1] += kept if tag == "equal" else "".join(b[j1:j2])
            continue
        ops += [[op, text] for op, text in zip("-+", pending) if text]
        pending = ["", ""]
        ops.append(["=", kept])
    ops += [[op, text] for op, text in zip("-+", pending) if text]
    return ops


def changed_words(old: list[str], new: list[str]) -> int:
    """Words inserted, deleted or replaced between two word lists (a replaced word counts once)."""
    # Edits are local: trimming the shared head and tail first leaves difflib a few words, not
    # a paragraph (a paper with an edit in each of its 100 paragraphs: 122 -> 236 papers/s).
    n, head, tail = min(len(old), len(new)), 0, 0
    while head < n and old[head] == new[head]:
        head += 1
    while tail < n - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    old, new = old[head:len(old) - tail], new[head:len(new) - tail]
    if not old or not new:
        return len(old) + len(new)
    ops = difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes()
    return sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def revision_pairs(units: list[dict], data_cfg) -> tuple[list[dict], list[dict]]:
    """(pairs, rejected) from revision units, gated as the module docstring says."""
    pairs, rejected = [], []
    lo, hi = data_cfg.gates.min_length_ratio, data_cfg.gates.max_length_ratio
    for unit in units:
        rough, original = unit["rough"], unit["text"]
        where = {"paper": unit["paper"], "section": unit["section"], "shape": unit["shape"], "style": KIND}
        changed = changed_words(rough.split(), original.split())
        ratio = len(gates.words(rough)) / max(1, len(gates.words(original)))
        if changed < data_cfg.revisions.min_changed_words:
            verdict = ("small_edit", f"{changed} changed words < {data_cfg.revisions.min_changed_words}")
        elif not lo <= ratio <= hi:
            verdict = ("length_ratio", f"{ratio:.2f} outside [{lo}, {hi}]")
        else:
            pairs.append({"id": f"{unit['id']}/{KIND}", "unit_id": unit["id"], **where, "kind": KIND,
                          "rough": rough, "original": original, "words_rough": len(rough.split()),
                          "words_original": len(original.split()), "changed_words": changed,
                          "generator": "author"})
            continue
        rejected.append({"unit_id": unit["id"], **where, "kind": KIND, "reason": verdict[0],
                         "detail": verdict[1], "rough": rough})
    return pairs, rejected
