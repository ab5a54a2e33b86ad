"""Configuration for the entry points: YAML files plus `key=value` overrides, validated.

Only entry points (the CLI, tools) read configuration; library classes take plain keyword
arguments. A schema is a (nested) dataclass; a dotted key addresses a nested field:

    cfg = load_config(EdgeConfig, Path("edge.yaml"), ["tracker.name=botsort", "stride=2"])

An unknown key is rejected with the closest valid name; a value of the wrong type is rejected
with "expected …, got …".
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from models.errors import CrossviewError

T = TypeVar("T")


class ConfigError(CrossviewError):
    """A configuration file or override that does not fit the schema."""


def _field_types(schema: type) -> dict[str, Any]:
    hints = typing.get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(sorted(valid))}"
    return ConfigError(f"unknown config key {key!r}{hint}")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: expected {annotation}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:  # a library's own options, held as given (e.g. a judge's keyword arguments)
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{key}: expected a mapping of names to values, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(annotation, value, prefix=f"{key}.")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if annotation is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if annotation is str and isinstance(value, datetime.date):  # YAML reads an unquoted 2026-11-25 as a date
        return value.isoformat()
    if annotation is Path and isinstance(value, str):
        return Path(value)
    raise ConfigError(f"{key}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def _build(schema: type[T], values: dict[str, Any], prefix: str = "") -> T:
    fields = _field_types(schema)
    for key in values:
        if key not in fields:
            raise _unknown_key(prefix + key, [prefix + name for name in fields])
    kwargs = {name: _coerce(prefix + name, values[name], fields[name]) for name in fields if name in values}
    try:
        return schema(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or 'config'}: {exc}") from exc


def _as_dict(instance: Any) -> dict[str, Any]:
    return {f.name: (_as_dict(v) if dataclasses.is_dataclass(v := getattr(instance, f.name)) else v)
            for f in dataclasses.fields(instance)}


def _set_dotted(tree: dict[str, Any], schema: type, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node, node_schema, path = tree, schema, ""
    for part in parts[:-1]:
        fields = _field_types(node_schema)
        if part not in fields or not dataclasses.is_dataclass(fields[part]):
            raise _unknown_key(path + part, [path + name for name in fields])
        node_schema = fields[part]
        node = node.setdefault(part, {})
        path += part + "."
    fields = _field_types(node_schema)
    if parts[-1] not in fields:
        raise _unknown_key(dotted, [path + name for name in fields])
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=3` -> ("a.b", 3): the value is parsed as YAML, so numbers, booleans and lists work."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({_one_line(exc)})") from exc
    return key.strip(), value


def load_config(schema: type[T], path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults from the dataclass, then the YAML file, then the overrides; all validated."""
    tree: dict[str, Any] = _as_dict(schema())
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {_one_line(exc)}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        _merge(tree, loaded)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, schema, key, value)
    return _build(schema, tree)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
