"""Check the command line before Hydra creates a run dir: one clear line per mistake.

Hydra's own messages for a wrong type or an unknown option span several lines and, for a
key pasted on the command line, would echo it into `.hydra/overrides.yaml`. This composes
every variant a sweep would run, validates it, and stops at the first mistake.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from voicetune.config import GROUPS, looks_like_secret, validate
from voicetune.errors import UserError

# Flags whose next argument is their value, not an override.
_FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-name", "-cn",
                     "--config-path", "-cp", "--config-dir", "-cd", "--info", "-i",
                     "--experimental-rerun"}
_NO_CHECK = {"--help", "-h", "--hydra-help", "--version", "--shell-completion", "-sc"}
# Keys that moved: evaluation settings left `train` so that they never change the training key.
MOVED = {"train.eval_samples": "eval.samples_per_shape", "train.eval_records": "eval.loss_records"}


def overrides_of(argv: list[str]) -> list[str] | None:
    """The override arguments, or None when Hydra is only asked for help."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _NO_CHECK:
            return None
        elif arg in _FLAGS_WITH_VALUE:
            skip = True
        elif not arg.startswith("-") and not re.match(r"^[+~]*hydra[./]", arg):
            out.append(arg)
    return out


def check_moved(overrides: list[str]) -> None:
    """A key from before a rename gets its new name, not Hydra's 'not in struct'."""
    for item in overrides:
        key = item.partition("=")[0].lstrip("+~")
        if key in MOVED:
            raise UserError(f"{key}: moved to {MOVED[key]} (evaluation settings no longer change what is trained)")


def check_secrets(overrides: list[str]) -> None:
    """Refuse an API key typed on the command line, without repeating it."""
    for item in overrides:
        key, _, value = item.partition("=")
        if re.search(r"(^|\.)(api_key|token|secret|password)$", key.lstrip("+~")) or looks_like_secret(value):
            raise UserError(
                f"{key}: looks like a secret on the command line; keys come only from environment "
                "variables (export MY_KEY=...; generator.api_key_env=MY_KEY)")


def variants(overrides: list[str]) -> list[list[str]]:
    """Override lists covering every value of every sweep at least once."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        raise UserError(f"{_first_bad(overrides)}: {str(exc).splitlines()[0]} (quote a value holding = ? & "
                        "or spaces: 'key=\"value\"')") from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = [(_prefix(o) + o.get_key_element(), list(o.sweep_string_iterator()))
              for o in parsed if o.is_sweep_override()]
    base = fixed + [f"{k}={vals[0]}" for k, vals in sweeps]
    out = [base]
    for i, (key, vals) in enumerate(sweeps):
        for val in vals[1:]:
            out.append(fixed + [f"{k}={v[0]}" for j, (k, v) in enumerate(sweeps) if j != i] + [f"{key}={val}"])
    return out


def _first_bad(overrides: list[str]) -> str:
    """The key of the first override Hydra's grammar refuses (never its value: it may be a secret)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for item in overrides:
        try:
            parser.parse_overrides([item])
        except OverrideParseException:
            return item.partition("=")[0]
    return "overrides"


def _prefix(override) -> str:
    from hydra.core.override_parser.types import OverrideType

    return {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}.get(override.type, "")


def compose_checked(conf_dir: Path, overrides: list[str]):
    """Compose and validate one config; Hydra/OmegaConf errors become one UserError line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
    except MissingConfigException as exc:
        raise UserError(_unknown_option(conf_dir, overrides, exc)) from None
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_one_line(exc)) from None
    validate(cfg)
    return cfg


def _unknown_option(conf_dir: Path, overrides: list[str], exc: Exception) -> str:
    for item in overrides:
        group, _, option = item.lstrip("+~").partition("=")
        folder = conf_dir / group
        if group in GROUPS and not (folder / f"{option}.yaml").exists():
            allowed = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
            return f"{group}={option}: unknown option; allowed: {allowed}"
    return str(exc).splitlines()[0]


def _one_line(exc: Exception) -> str:
    """`key=value: problem` from an OmegaConf error, however Hydra wrapped it."""
    cause = exc
    while cause.__cause__ is not None and not getattr(cause, "full_key", None):
        cause = cause.__cause__
    msg = getattr(cause, "msg", None) or str(cause).splitlines()[0]
    key = getattr(cause, "full_key", None)
    if key:
        return f"{key}: {msg.splitlines()[0]}"
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)


def preflight(conf_dir: Path, argv: list[str] | None = None) -> None:
    """Exit 2 with one line if the command line or the composed config is wrong."""
    argv = sys.argv[1:] if argv is None else argv
    overrides = overrides_of(argv)
    if overrides is None:
        return
    try:
        check_secrets(overrides)
        check_moved(overrides)
        for variant in variants(overrides):
            compose_checked(conf_dir, variant)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
