"""The stage contract: what a stage is, what it sees, and the services it gets.

A stage is declared once (in `voicetune.stages`) with its function, the stages it needs and the
config keys it reads. The pipeline hands the function a `Context` whose `cfg` is a *view*: a
read-only config holding exactly those keys, resolved. Reading any other key raises, so a stage
cannot depend on config its cache key does not cover; the key is the hash of the view itself.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from voicetune.cache import Cache, digest


@dataclass(frozen=True)
class StageSpec:
    """One stage: `function(ctx) -> metrics`, the stages whose outputs it reads, the config it sees."""

    name: str
    function: str  # "module:function", imported only when the stage computes
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    tracked: bool = False  # logs to W&B: gets the run's tracker
    # "module:function" (view) -> [[relative path, sha256], ...]: files outside the cache it reads
    # (the corpus). Their bytes are keyed; the keys in `located` (the folder's path) are visible
    # to the stage but left out of the key: moving the papers changes nothing.
    sources: str | None = None
    located: tuple[str, ...] = ()
    # "module:function" (view) -> None: raises a UserError before any stage of the run computes.
    check: str | None = None
    # "module:function" (ctx) -> dict: runs on this machine after the output is ready, cached or
    # not, wherever the stage itself ran (the LM Studio install writes into the user's home).
    deliver: str | None = None
    deliver_check: str | None = None  # like `check`, for the delivery; always runs here
    deliver_reads: tuple[str, ...] = ()  # the delivery's own view: not part of the stage's key

    def call(self, attribute: str, *args):
        """Import and call one of the declared functions."""
        module, _, name = getattr(self, attribute).partition(":")
        return getattr(importlib.import_module(module), name)(*args)


def plain(value: Any) -> Any:
    """A config value as plain Python: containers resolved, enums as the names users type."""
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    return value.name if isinstance(value, Enum) else value


def view(cfg: DictConfig, reads: tuple[str, ...]) -> DictConfig:
    """A read-only, struct-mode copy of `cfg` holding only the keys in `reads` (resolved)."""
    tree: dict = {}
    for key in reads:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = plain(OmegaConf.select(cfg, key, throw_on_missing=True))
    return frozen(tree)


def frozen(tree: dict | str) -> DictConfig:
    """A config from a dict (or its YAML) in which reading a missing key raises and nothing is writable."""
    seen = OmegaConf.create(tree)
    OmegaConf.set_struct(seen, True)
    OmegaConf.set_readonly(seen, True)
    return seen


def view_digest(seen: DictConfig, located: tuple[str, ...] = ()) -> Any:
    """What a view contributes to a cache key: its whole content, less the `located` keys."""
    tree = OmegaConf.to_container(seen, resolve=True)
    for key in located:
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        node.pop(leaf)
    return tree


class Services:
    """What every stage of a run shares: one cache, tokenizers loaded once."""

    def __init__(self, cache: Cache):
        self.cache = cache
        self._tokenizers: dict[str, Any] = {}

    def tokenizer(self, model_cfg):
        """The model's tokenizer with its chat template, loaded once per run."""
        from voicetune.chat import load_tokenizer

        key = digest(plain(model_cfg))
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(model_cfg, self.cache)
        return self._tokenizers[key]


@dataclass
class Context:
    """A stage's whole world: its config view, its input folders, its output folder, services.

    `tracker` is the run's W&B tracker for a tracked stage (None otherwise, or when disabled).
    """

    cfg: DictConfig
    inputs: dict[str, Path]
    out: Path
    services: Services = field(repr=False)
    tracker: Any = None

    @property
    def cache(self) -> Cache:
        return self.services.cache

    def tokenizer(self):
        return self.services.tokenizer(self.cfg.model)
