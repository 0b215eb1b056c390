"""The config system: layering, strict keys and values, and every shipped YAML validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlsi_edge.config import ConfigError, describe, dump_yaml, from_dict, load_config, parse_override, read_yaml
from vlsi_edge.deploy.targets import known_targets, load_target
from vlsi_edge.recipes import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_then_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model:\n  dtype: bfloat16\ndata:\n  seed: 3\n")
    config = load_config(RunConfig, recipe, ["data.seed=7", "train.batch_size=8"])
    assert config.model.dtype == "bfloat16"  # from the recipe
    assert config.data.seed == 7  # the override wins over the recipe
    assert config.train.batch_size == 8
    assert config.model.family == "idefics3"  # untouched default
    # The resolved config round-trips through YAML.
    assert from_dict(RunConfig, __import__("yaml").safe_load(dump_yaml(config))) == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.dtype=fp8", "model.dtype: 'fp8' is not allowed (from --set model.dtype=fp8); allowed: 'float32', 'bfloat16', 'float16'"),
        ("model.dtyp=float32", "model.dtyp: unknown key (from --set model.dtyp=float32); known keys here: dtype, family"),
        ("data.seed=abc", "data.seed: 'abc' is not int"),
        ("data.seed=true", "data.seed: True is not int"),
        ("train.batch_size=0", "train.batch_size (0) and train.grad_accum (1) must be >= 1"),
        ("model.family=gpt", "model.family: 'gpt' is not allowed; allowed: idefics3, qwen2_vl, llava"),
        ("data.noise=[1]", "data.noise: [1] is not float"),
        ("model=3", "model: expected a mapping of ModelConfig keys"),
        ("nokey", "expected KEY=VALUE"),
        ("a..b=1", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_key_and_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, overrides=[override])
    assert message in str(err.value)


def test_recipe_errors_name_the_file(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("distil:\n  kl: forward\n")
    with pytest.raises(ConfigError, match=rf"distil: unknown key \(from {bad_key}\)"):
        load_config(RunConfig, bad_key)
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        read_yaml(not_yaml)
    with pytest.raises(ConfigError, match="missing.yaml: no such file"):
        load_config(RunConfig, tmp_path / "missing.yaml")
    a_list = tmp_path / "list.yaml"
    a_list.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="list.yaml: expected a mapping"):
        load_config(RunConfig, a_list)


def test_override_values_parse_as_yaml():
    assert parse_override("data.image_root=null") == {"data": {"image_root": None}}
    assert parse_override("data.noise=0.1") == {"data": {"noise": 0.1}}
    assert parse_override("model.teacher=/models/a=b") == {"model": {"teacher": "/models/a=b"}}
    assert load_config(RunConfig, overrides=["data.noise=0"]).data.noise == 0.0  # int widens to float


def test_describe_lists_every_key_with_help():
    lines = describe(RunConfig)
    assert any(line.strip().startswith("model.dtype = 'float32'") and "compute dtype" in line for line in lines)
    assert any(line.strip().startswith("train.sft.lr = 0.0005") for line in lines)
    assert all(not line.endswith("]  ") for line in lines), "every key needs a help text"


def test_partial_section_keeps_the_fields_own_defaults():
    """train.sft has its own default lr; overriding only its steps must not reset it to StageConfig's."""
    default = RunConfig().train.sft
    config = load_config(RunConfig, overrides=["train.sft.steps=5"])
    assert config.train.sft.steps == 5
    assert config.train.sft.lr == default.lr != type(default)().lr


SHIPPED = sorted([*(ROOT / "train").glob("*.yaml"), *(ROOT / "export").glob("*.yaml")])


def test_shipped_recipes_exist():
    assert any(p.parent.name == "train" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_yaml_validates(path):
    text = path.read_text()
    assert text.startswith("#"), f"{path} must begin with a comment: what it is for, what it needs, the command"
    if path.parent.name == "train":
        load_config(RunConfig, path)
    else:
        target = load_target(str(path))
        assert target.name == path.stem


def test_the_three_targets_ship_and_an_unknown_target_lists_them():
    assert known_targets() == ["android-arm64", "linux-arm64", "x86_64"]
    with pytest.raises(ConfigError, match="unknown target 'ios'.*android-arm64, linux-arm64, x86_64"):
        load_target("ios")


def test_target_values_are_checked_with_the_key_and_file():
    with pytest.raises(ConfigError, match=r"onnx.block_size: 48 must be a power of two.*android-arm64.yaml"):
        load_target("android-arm64", ["onnx.block_size=48"])
    with pytest.raises(ConfigError, match=r"executorch.schemes\[1\]: '8da2w' is not allowed"):
        load_target("android-arm64", ["executorch.schemes=[fp32, 8da2w]"])
    target = load_target("android-arm64", ["gate.int4=3"])
    assert (target.threshold("8da4w"), target.threshold("int8"), target.threshold("fp32")) == (3.0, 1.0, 0.5)


def test_run_dir_reads_configs_that_still_have_the_removed_batch_size(tmp_path):
    """Runs written before the unused top-level `batch_size` left the schema still export."""
    from vlsi_edge.contracts.run_dir import RunDir

    (tmp_path / "config.yaml").write_text(dump_yaml(RunConfig()) + "batch_size: 32\n")
    assert RunDir(tmp_path).load_config() == RunConfig()
    with pytest.raises(ConfigError, match="batch_size: unknown key"):
        load_config(RunConfig, tmp_path / "config.yaml")  # a recipe with it is told so
