"""The `cuda` lock (pyproject's extra) resolves on the package registry, for the Modal image's platform, to its pins.

pip resolves the lock for Linux x86_64 / CPython 3.11 with `--dry-run --report`: from metadata
only, PEP 658 files where the index serves them, else HTTP range reads of each wheel's METADATA
(fast-deps), so none of the ~1.1 GB of wheels (torch 2.10.0 alone is 916 MB) is downloaded.
Only the lock: a foreign-platform resolve takes wheels only, and voicetune's own hydra-core needs
antlr4-python3-runtime, an sdist; its other dependencies are checked against the pins statically.
No GPU; the registry is needed, as CI has it: a failure to resolve is a real failure, in one line.
"""

import json
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from voicetune.backends.unsloth import cuda_requirements, source_project
from voicetune.compute.modal import image_packages
from voicetune.errors import UserError
from voicetune.stages.train import trainer

LOCKED = {"torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth",
          "unsloth-zoo", "xformers"}  # xformers: Unsloth's cu128-torch2100 extra pins it too
# What pip accepts on a glibc-2.28 x86_64 machine (torch's wheel is manylinux_2_28; Modal's
# debian_slim has glibc 2.36): every manylinux tag down to 2_5, plus the legacy alias names.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + ["manylinux2014_x86_64"]
# This machine's own pip settings (local wheel folders, file:// indexes, a torch cap) describe
# it, not the image: a single space is read by pip as an empty list. The index and cert stay.
MACHINE_ONLY = {"PIP_FIND_LINKS": " ", "PIP_EXTRA_INDEX_URL": " ", "PIP_CONSTRAINT": " "}


def pins() -> dict[str, str]:
    """Package -> version of each lock line (each must be a bare `name==version`)."""
    found = {}
    for line in cuda_requirements():
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.extras and req.marker is None, line
        found[canonicalize_name(req.name)] = specs[0].version
    return found


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict[str, str]:
    """Package -> version pip would install from the lock alone on the Modal image's platform."""
    report = tmp_path_factory.mktemp("resolve") / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
           "--report", str(report), "--only-binary=:all:", "--python-version", "3.11",
           *(f"--platform={p}" for p in PLATFORMS), "--use-feature=fast-deps", "--timeout", "60",
           *cuda_requirements()]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MACHINE_ONLY}, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.fail("pip did not resolve the cuda lock within 600 s (registry unreachable?)", pytrace=False)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()[-1:]
        offline = "registry unreachable (pip retried its connection); " if "Retrying" in done.stderr else ""
        pytest.fail(f"pip could not resolve the cuda lock for linux x86_64 / py3.11: {offline}"
                    f"{errors[0] if errors else done.returncode}", pytrace=False)
    return {canonicalize_name(d["metadata"]["name"]): d["metadata"]["version"]
            for d in json.loads(report.read_text())["install"]}


def test_lock_pins_exactly_the_training_stack():
    assert set(pins()) == LOCKED


def test_voicetunes_own_floors_admit_the_pins():
    # The image drops these lines for the pins (image_packages); `pip install voicetune[cuda]` keeps
    # both, so a floor above a pin would make the extra uninstallable.
    locked = pins()
    assert [r for r in image_packages() if canonicalize_name(Requirement(r).name) in locked] == cuda_requirements()
    for line in source_project()["dependencies"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        if name in locked:
            assert req.specifier.contains(locked[name]), (line, locked[name])


@pytest.mark.slow
def test_lock_resolves_to_its_pins_on_cuda_12(resolved):
    assert {name: resolved.get(name) for name in LOCKED} == pins()
    # The PyPI torch 2.10.0 wheel is the CUDA 12.8 build (2.11 moved to CUDA 13).
    assert resolved["nvidia-cuda-runtime-cu12"].startswith("12.8")
    assert not [name for name in resolved if name.endswith("-cu13") or name == "cuda-toolkit"]
    assert "unsloth[" not in " ".join(cuda_requirements())  # extras would pull URLs off the registry


@pytest.mark.slow
def test_what_the_trainer_needs_holds_in_the_lock_and_the_base_install(resolved):
    base = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in source_project()["dependencies"]}
    for name, spec in trainer.TRAINER_NEEDS.items():
        assert SpecifierSet(spec).contains(resolved[name]), (name, resolved[name])
        assert base[name] == SpecifierSet(spec)  # `pip install voicetune` (CPU) asks for the same floor
    trainer.require_stack()  # and this machine's CPU stack has it


def test_an_old_stack_fails_in_one_line(monkeypatch):
    from importlib.metadata import version

    monkeypatch.setattr(trainer, "TRAINER_NEEDS", {"transformers": ">=99"})
    with pytest.raises(UserError) as err:
        trainer.require_stack()
    assert str(err.value) == (f"transformers {version('transformers')} is installed; the trainer needs "
                              "transformers>=99: pip install 'transformers>=99'")
