"""Strict dotted overrides (`model.backbone=x3d_m train.lr=0.05`) and (de)serialisation of the tree.

The CLI, the Ray jobs and Ray Tune's search space all go through `apply_overrides`, so a key or
value that is wrong anywhere fails the same way: a `ValueError` naming the valid keys or choices.
Values may be strings (parsed by the field's type) or already-typed values (from Tune).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Iterable, Mapping, TypeVar, get_args, get_origin

from pipeline.config.base import Section, field_types, literal_choices

T = TypeVar("T", bound=Section)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """`["a.b=1", "c=x"]` -> `{"a.b": "1", "c": "x"}`; rejects items without `=`."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key.path=value")
        out[key.strip()] = value.strip()
    return out


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert `value` (often a string from the command line) to the annotated type `tp`."""
    choices = literal_choices(tp)
    if choices is not None:
        for choice in choices:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"{where}={value!r} is not valid; choose one of "
                         f"{', '.join(repr(c) for c in choices)}")
    origin = get_origin(tp)
    if origin is typing.Union or type(None) in get_args(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return coerce(value, args[0], where)
    if origin is tuple:
        inner = get_args(tp)[0]
        if isinstance(value, str):
            value = [v for v in value.strip("()[] ").split(",") if v.strip()]
        return tuple(coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in value)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in _TRUE:
                return True
            if str(value).lower() in _FALSE:
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value, 0)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except ValueError:
        raise ValueError(f"{where}={value!r} is not a valid {tp.__name__}") from None
    raise TypeError(f"{where}: unsupported config type {tp!r}")


def apply_overrides(cfg: T, overrides: Mapping[str, Any] | Iterable[str]) -> T:
    """A copy of `cfg` with dotted keys replaced; every section is re-validated."""
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    for key, value in overrides.items():
        cfg = _set(cfg, key.split("."), value, key)
    return cfg


def _set(node: Section, path: list[str], value: Any, full_key: str) -> Section:
    hints = field_types(type(node))
    names = [f.name for f in dataclasses.fields(node)]
    head = path[0]
    if head not in names:
        prefix = full_key[: len(full_key) - len(".".join(path))]
        raise ValueError(f"unknown config key {full_key!r}; valid keys under "
                         f"{prefix.rstrip('.') or 'the root'}: {', '.join(prefix + n for n in names)}")
    current = getattr(node, head)
    if isinstance(current, Section):
        if len(path) == 1:
            raise ValueError(f"{full_key!r} is a section; set one of its keys: "
                             f"{', '.join(full_key + '.' + f.name for f in dataclasses.fields(current))}")
        return dataclasses.replace(node, **{head: _set(current, path[1:], value, full_key)})
    if len(path) > 1:
        raise ValueError(f"unknown config key {full_key!r}: {'.'.join(path[:1])} is not a section")
    return dataclasses.replace(node, **{head: coerce(value, hints[head], full_key)})


def to_dict(cfg: Section) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: Mapping[str, Any], _prefix: str = "") -> T:
    """Rebuild a config from `to_dict` output (e.g. a checkpoint's or MLflow's config JSON).

    Each section is built in one go (not key by key) so cross-field checks see the final values.
    Keys missing from `data` keep their defaults (or the section's `LEGACY` value, what a config
    saved before the key existed meant); unknown keys are an error.
    """
    hints = field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown config key(s) {', '.join(sorted(_prefix + k for k in unknown))}; "
                         f"valid: {', '.join(sorted(_prefix + n for n in names))}")
    kwargs: dict[str, Any] = {k: v for k, v in getattr(cls, "LEGACY", {}).items() if k not in data}
    for key, value in data.items():
        tp = hints[key]
        if isinstance(tp, type) and issubclass(tp, Section):
            kwargs[key] = from_dict(tp, value, f"{_prefix}{key}.")
        else:
            kwargs[key] = coerce(value, tp, _prefix + key)
    return cls(**kwargs)


def flatten(cfg: Section) -> dict[str, Any]:
    """Dotted keys to leaf values, e.g. for MLflow params."""
    return flatten_dict(to_dict(cfg))


def flatten_dict(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_json(cfg: Section) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)
