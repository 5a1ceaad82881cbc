"""Deterministic rule-based de-polisher: rough drafts with no network, for the demo and tests.

Each style swaps some words and adds phrases to sentences; it never removes a word holding a
digit or a citation, and never adds or removes a paragraph break. Additions are budgeted so
the draft lands inside the default gates: word similarity = 2M / (n + n') stays under 0.92
once roughly 25% new words are added (2n / 2.25n = 0.89), and the length ratio stays well
under 1.6 because additions stop at 50%.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from voicetune.generators.requests import Reply, Request, estimate_tokens

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\[])")
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Sentence starters that may be lower-cased after an added opener; anything else (a name, an
# acronym, "Smith et al.") keeps its capital.
LOWERABLE = set(
    "The This These That Those We Our It Its In A An Each Both All Many Most For To When While "
    "Here There Such As On At By With From One Some Although Because Since If After Before "
    "Using Finally Thus Overall Taken Together Across Compared Given Unlike Results Data "
    "Participants Patients Models Methods Analysis Figure Table Previous Recent Future".split()
)

# Sentences already starting with one of these take no opener ("Basically, But ...").
CONNECTIVES = {"But", "And", "So", "Also", "Or", "Yet", "Then", "OK"}


@dataclass(frozen=True)
class Style:
    """A phrase bank: word swaps, sentence openers, clauses appended before the full stop."""

    swaps: dict[str, str] = field(default_factory=dict)
    openers: tuple[str, ...] = ()
    tails: tuple[str, ...] = ()
    # Transitions dropped at a sentence start (the loose draft forgets them).
    drop: tuple[str, ...] = ()
    # Long sentences are split at ", and " / "; " into short ones.
    split: bool = False


STYLES: dict[str, Style] = {
    "ai_generic": Style(
        swaps={"use": "leverage", "uses": "leverages", "used": "leveraged", "show": "showcase",
               "shows": "showcases", "important": "crucial", "many": "numerous",
               "help": "facilitate", "helps": "facilitates",
               "examine": "delve into", "explore": "delve into", "key": "pivotal"},
        openers=("It is important to note that", "Furthermore,", "Moreover,", "Notably,",
                 "Importantly,", "In today's rapidly evolving research landscape,",
                 "Additionally,", "Crucially,"),
        tails=(", which plays a crucial role in this context", ", highlighting its significance",
               ", underscoring the need to delve deeper", ", which is a key aspect",
               ", showcasing a robust and comprehensive approach"),
    ),
    "verbose_coauthor": Style(
        swaps={"because": "due to the fact that", "can": "may potentially",
               "now": "at this point in time", "if": "in the event that",
               "although": "despite the fact that", "shows": "would seem to show"},
        openers=("Arguably,", "In this regard,", "It could be argued that", "As mentioned above,",
                 "Generally speaking,", "To some extent,", "In a sense,",
                 "As we have already noted,"),
        tails=(", as mentioned above", ", so to speak", ", more or less",
               ", as was already said", ", to a certain degree", ", at least in some respects"),
    ),
    "loose_draft": Style(
        swaps={"is not": "isn't", "are not": "aren't", "do not": "don't", "does not": "doesn't",
               "did not": "didn't", "cannot": "can't", "it is": "it's", "we are": "we're",
               "that is": "that's", "there is": "there's", "approximately": "about",
               "demonstrate": "show", "demonstrates": "shows", "utilize": "use",
               "obtain": "get", "obtained": "got", "however,": "but", "therefore,": "so",
               "is": "is kind of", "are": "are basically"},
        openers=("Basically,", "So,", "Anyway,", "Honestly,", "OK so,", "I mean,", "Also,"),
        tails=(", I think", ", pretty much", ", or something like that", ", more or less"),
        drop=("However,", "Moreover,", "Furthermore,", "Therefore,", "Additionally,", "Thus,",
              "Consequently,"),
        split=True,
    ),
}
GENERIC_OPENERS = STYLES["ai_generic"].openers + STYLES["verbose_coauthor"].openers
GENERIC_TAILS = STYLES["ai_generic"].tails + STYLES["verbose_coauthor"].tails


def style_for(name: str) -> Style:
    """A built-in style, or for a user-added name a generic mix chosen by the name's hash."""
    if name in STYLES:
        return STYLES[name]
    rng = random.Random(_seed(name))
    return Style(openers=tuple(rng.sample(GENERIC_OPENERS, 6)),
                 tails=tuple(rng.sample(GENERIC_TAILS, 5)))


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def _protected(word: str) -> bool:
    """Words holding a number or citation are never altered."""
    return any(c.isdigit() for c in word) or "[" in word


def swap_words(text: str, style: Style, rng: random.Random) -> str:
    """Apply about half of the style's word swaps, leaving numbers and citations alone."""
    for old, new in style.swaps.items():
        pattern = re.compile(rf"\b{re.escape(old)}(?![\w-])", re.IGNORECASE)
        text = pattern.sub(lambda m: _case_like(m.group(0), new) if rng.random() < 0.5
                           else m.group(0), text)
    return text


def _case_like(found: str, new: str) -> str:
    return new[0].upper() + new[1:] if found[0].isupper() else new


def split_sentences(paragraph: str, style: Style) -> list[str]:
    """Sentences of a paragraph; a splitting style also breaks long ones at ', and ' / '; '."""
    sentences = SENTENCE_END.split(paragraph.strip())
    if not style.split:
        return sentences
    out = []
    for sentence in sentences:
        # Only sentences over 20 words: short ones would turn into fragments.
        if len(sentence.split()) > 20:
            sentence = re.sub(r"(?:, and|;) (?=[a-z])", lambda m: ". And " if "and" in m.group(0)
                              else ". ", sentence, count=1)
            out.extend(SENTENCE_END.split(sentence))
        else:
            out.append(sentence)
    return out


def _outside_brackets(head: str) -> bool:
    """True when a position is not inside (...) or [...] (a citation list like [3, 4])."""
    return head.count("(") == head.count(")") and head.count("[") == head.count("]")


def add_opener(sentence: str, opener: str, text: str) -> str:
    """Prefix an opener, lower-casing the old first word when the text uses it in lower case."""
    first, _, rest = sentence.partition(" ")
    if first in LOWERABLE or (first.istitle() and re.search(rf"\b{re.escape(first.lower())}\b", text)):
        first = first.lower()
    return f"{opener} {first} {rest}".rstrip()


def add_tail(sentence: str, tail: str, rng: random.Random) -> str:
    """Insert a clause before an inner comma or the final punctuation, whichever is drawn."""
    end = len(sentence) - 1 if sentence and sentence[-1] in ".!?" else len(sentence)
    spots = [m.start() for m in re.finditer(r"(?<=[A-Za-z]), (?=[a-z])", sentence[:end])
             if _outside_brackets(sentence[:m.start()])] + [end]
    at = rng.choice(spots)
    return sentence[:at] + tail + sentence[at:]


def depolish(text: str, style_name: str, seed: int, unit_id: str) -> str:
    """The rough draft of `text` in a style; same paragraphs, every number kept."""
    style = style_for(style_name)
    rng = random.Random(_seed(seed, unit_id, style_name))
    n = len(text.split())
    # Add 30-45% new words and never more than 55%: see the module docstring for why.
    budget, cap = int(n * rng.uniform(0.30, 0.45)) + 1, max(1, int(n * 0.55))
    paragraphs = [split_sentences(swap_words(p, style, rng), style)
                  for p in PARAGRAPH_BREAK.split(text.strip())]
    added = sum(len(" ".join(p).split()) for p in paragraphs) - n
    slots = [(i, j) for i, p in enumerate(paragraphs) for j in range(len(p))]
    rng.shuffle(slots)
    opened: dict[tuple[int, int], bool] = {}
    # Later passes give short units the other kind of edit and long sentences more tails.
    for i, j in slots * 4:
        if added >= budget:
            break
        plain = _plain_start(paragraphs[i][j])
        if (i, j) in opened:
            use_opener = plain and not opened[(i, j)]
            opened[(i, j)] = True
        else:
            use_opener = opened[(i, j)] = plain and (rng.random() < 0.6 or not style.tails)
        paragraphs[i][j], grown = _roughen(paragraphs[i][j], style, rng, cap - added,
                                           use_opener, text)
        added += grown
    return "\n\n".join(" ".join(p) for p in paragraphs)


def _plain_start(sentence: str) -> bool:
    """A sentence that can take an opener: no transition, connective or number first."""
    first = sentence.split(" ", 1)[0]
    return not first.endswith(",") and first not in CONNECTIVES and not _protected(first)


def _roughen(sentence: str, style: Style, rng: random.Random, room: int, use_opener: bool,
             text: str) -> tuple[str, int]:
    """One edit to a sentence that adds at most `room` words; returns it and the words added."""
    first = sentence.split(" ", 1)[0]
    if first in style.drop and rng.random() < 0.7:
        return _drop(sentence, first), -1
    bank = style.openers if use_opener else style.tails
    fitting = [p for p in bank if len(p.split()) <= room and p not in sentence]
    if not fitting:
        return sentence, 0
    phrase = rng.choice(fitting)
    edited = add_opener(sentence, phrase, text) if use_opener else add_tail(sentence, phrase, rng)
    return edited, len(phrase.split())


def _drop(sentence: str, first: str) -> str:
    rest = sentence[len(first):].lstrip()
    return rest[:1].upper() + rest[1:]


@dataclass
class OfflineGenerator:
    """The `offline` backend: free and instant, so its results are recomputed, not journaled."""

    model: str
    seed: int
    remote: bool = False

    async def complete(self, request: Request) -> Reply:
        rough = depolish(request.text, request.style, self.seed, request.unit_id)
        return Reply(content=rough, finish_reason="stop",
                     prompt_tokens=estimate_tokens(request.prompt),
                     completion_tokens=estimate_tokens(rough))

    async def aclose(self) -> None:
        """Nothing to release."""
