"""Every shipped config composes; every user mistake is one line naming key, value and rule."""

import pytest

from conftest import CONF, ROOT, run_cli
from voicetune.config import GROUPS, validate
from voicetune.errors import UserError


def options():
    return [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", options())
def test_every_shipped_option_composes(cfg_factory, group, option):
    extra = {"corpus=dir": ["corpus.path=" + str(ROOT / "src/voicetune/demo_corpus")],
             "generator=azure": ["generator.base_url=https://x.openai.azure.com"]}
    cfg = cfg_factory([f"{group}={option}", *extra.get(f"{group}={option}", [])])
    validate(cfg)
    assert cfg[group] is not None


def test_every_group_of_the_design_is_present():
    assert {p.name for p in CONF.iterdir() if p.is_dir()} >= set(GROUPS)
    assert {p.stem for p in (CONF / "data").glob("*.yaml")} >= {"sentence", "paragraph", "shape_mix"}
    assert {p.stem for p in (CONF / "export").glob("*.yaml")} >= {"merged", "mlx_q4", "gguf", "lmstudio", "none"}


def test_overrides_apply(cfg_factory):
    cfg = cfg_factory(["data=shape_mix", "lora.r=16", "train.epochs=3"])
    assert (cfg.data.name, cfg.lora.r, cfg.train.epochs) == ("shape_mix", 16, 3)
    assert cfg.data.shapes == {"paragraph": 0.7, "section": 0.15, "abstract": 0.15}


@pytest.mark.parametrize("override,message", [
    ("data.valid_fraction=0", "data.valid_fraction=0.0: must be between 0 and 1"),
    ("data.valid_fraction=1", "data.valid_fraction=1.0: must be between 0 and 1"),
    ("data.section_weights.abstract=-2", "data.section_weights.abstract=-2.0: weights must be >= 0"),
    ("data.shapes.paragraph=-1", "data.shapes.paragraph=-1.0: must be >= 0"),
    ("corpus.path=/no/such/folder", "corpus.path='/no/such/folder': must be an existing folder"),
    ("generator.concurrency=0", "generator.concurrency=0: must be >= 1"),
])
def test_validate_names_key_value_and_rule(cfg_factory, override, message):
    with pytest.raises(UserError) as err:
        validate(cfg_factory([override]))
    assert str(err.value).startswith(message)


def test_key_in_config_file_is_refused_without_echoing_it(cfg_factory):
    cfg = cfg_factory(["generator=openai"])
    cfg.generator.api_key_env = "sk-proj-abcdefghijklmnopqrstuvwxyz123456"
    with pytest.raises(UserError) as err:
        validate(cfg)
    assert "generator.api_key_env" in str(err.value) and "sk-proj" not in str(err.value)


@pytest.mark.parametrize("args,expected", [
    (["train.epochs=abc"], "train.epochs: Value 'abc' of type 'str' could not be converted to Float"),
    (["data=nope"], "data=nope: unknown option; allowed: paragraph, sentence, shape_mix"),
    (["data.valid_fraction=1.5"], "data.valid_fraction=1.5: must be between 0 and 1 (exclusive)"),
    (["data.section_weights.abstract=-1"], "data.section_weights.abstract=-1.0: weights must be >= 0"),
    (["corpus=dir", "corpus.path=/nope"], "corpus.path='/nope': must be an existing folder of papers (.docx, .md, .tex, .odt, .pdf)"),
    (["corpus=dir"], "corpus.path='???': required"),
    (["train.nope=1"], "train.nope: Key 'nope' not in 'TrainConfig'"),
    (["-m", "train.epochs=1,x"], "train.epochs: Value 'x' of type 'str' could not be converted to Float"),
    (["generator=openai", "generator.api_key_env=sk-abcdef1234567890abcdef12"], "generator.api_key_env: looks like a secret"),
    (["+generator.api_key=sk-abcdef1234567890abcdef12"], "+generator.api_key: looks like a secret"),
    (["train.backend=unslot"], "train.backend: Invalid value 'unslot', expected one of [auto, hf, unsloth, mlx]"),
    (["train.eval_samples=20"], "train.eval_samples: moved to eval.samples_per_shape"),
    (["generator.base_url=http://h/v1?k=v"], "generator.base_url: mismatched input '='"),
])
def test_cli_mistakes_are_one_line_without_traceback(tmp_path, args, expected):
    proc = run_cli(args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {lines[0][7:]}"] and lines[0][7:].startswith(expected), proc.stderr
    assert "Traceback" not in proc.stderr and "sk-abcdef" not in proc.stderr + proc.stdout
    assert not (tmp_path / "outputs").exists()  # nothing was started


def test_cfg_job_prints_the_composed_config(tmp_path):
    proc = run_cli(["--cfg", "job", "data=sentence", "lora.r=8"], cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "name: sentence" in proc.stdout and "r: 8" in proc.stdout
