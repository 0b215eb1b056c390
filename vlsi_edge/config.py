"""Typed configuration: nested dataclasses, YAML recipes holding overrides only, dotted CLI overrides.

A config is a tree of dataclasses (one per concern). Values come from three layers, later wins:

    defaults (the dataclass fields)  <-  recipe YAML (only what differs)  <-  --set a.b=value

Every key and value is checked against the dataclass type hints, so a typo or a bad value fails
before any work starts, with a message naming the key, the file it came from and what is allowed:

    >>> load_config(RunConfig, overrides=["distill.kl=sideways"])
    ConfigError: distill.kl: 'sideways' is not allowed (from --set); allowed: 'forward', 'reverse'

Each field's default and its help text live in one place: the field definition
(`field(default=..., metadata={"help": ...})`); `describe()` renders them for `--help`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from vlsi_edge.errors import InputError

T = TypeVar("T")


class ConfigError(InputError, ValueError):
    """A recipe or override that does not fit the config schema."""


def option(default: Any, help: str) -> Any:
    """A dataclass field with its help text; mutable defaults get a fresh copy per instance."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


# --------------------------------------------------------------------------------------------------
# Building and checking a dataclass tree from plain data
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"a list of {_type_name(inner)}"
    if origin is dict:
        _, inner = typing.get_args(tp)
        return f"a mapping to {_type_name(inner)}"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against type hint `tp`; return it (ints widen to float). Raise ConfigError."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"{key}: {value!r} is not {_type_name(tp)} (from {source})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r} (from {source})")
        return _build(tp, value, key + ".", source)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ConfigError(
                f"{key}: {value!r} is not allowed (from {source}); allowed: {', '.join(repr(a) for a in allowed)}"
            )
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option_tp in typing.get_args(tp):
            try:
                return _coerce(value, option_tp, key, source)
            except ConfigError as e:
                errors.append(e)
        if any("is not allowed" in str(e) for e in errors):
            raise next(e for e in errors if "is not allowed" in str(e))
        raise bad
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner,) = typing.get_args(tp)
        return [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        _, inner = typing.get_args(tp)
        return {str(k): _coerce(v, inner, f"{key}.{k}", source) for k, v in value.items()}
    if tp is type(None):
        if value is not None:
            raise bad
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not a finite number (from {source})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise TypeError(f"config type {tp!r} of {key} is not supported")


def _build(cls: type[T], data: dict, prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in data.items():
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{prefix}{name}: unknown key (from {source}); known keys here: {known}")
        field = fields[name]
        if dataclasses.is_dataclass(hints[name]) and isinstance(value, dict) and field.default_factory is not dataclasses.MISSING:
            # A partial section keeps the *field's* defaults (e.g. train.sft's own lr), not the class's.
            value = _merge(dataclasses.asdict(field.default_factory()), value)
        kwargs[name] = _coerce(value, hints[name], prefix + name, source)
    try:
        return cls(**kwargs)
    except ConfigError as e:  # cross-field checks in __post_init__; nested sections' messages get their key path
        message = str(e)
        if prefix and not message.startswith(prefix.rstrip(".")):
            message = prefix + message
        raise ConfigError(f"{message} (from {source})") from None


def from_dict(cls: type[T], data: dict | None, source: str = "<dict>") -> T:
    """Build and validate config `cls` from plain data (unset keys keep their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return _build(cls, data, "", source)


def to_dict(config: Any) -> dict:
    """The plain-data form of a config (for YAML / JSON)."""
    return dataclasses.asdict(config)


# --------------------------------------------------------------------------------------------------
# Layers: recipe YAML and dotted overrides
# --------------------------------------------------------------------------------------------------


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); expected a YAML file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> dict:
    """'distill.kl=reverse' -> {'distill': {'kl': 'reverse'}}; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected KEY=VALUE with a dotted key, e.g. distill.kl=reverse")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Defaults <- recipe YAML <- dotted overrides, validated into `cls`."""
    config = from_dict(cls, {}, "defaults")
    data: dict = {}
    if recipe is not None:
        data = read_yaml(recipe)
        config = from_dict(cls, data, str(recipe))
    for text in overrides:
        data = _merge(data, parse_override(text))
        config = from_dict(cls, data, f"--set {text}" if recipe is None else f"{recipe} + --set {text}")
    return config


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def describe(cls: type, prefix: str = "", defaults: Any = None) -> list[str]:
    """One line per key: dotted name, default and help text (for --help)."""
    defaults = cls() if defaults is None else defaults
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, default = hints[f.name], getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            lines += describe(tp, prefix + f.name + ".", default)
            continue
        lines.append(f"  {prefix}{f.name} = {default!r}  [{_type_name(tp)}]  {f.metadata.get('help', '')}")
    return lines
