"""A small JSON-schema checker for tool inputs and outputs.

It covers the subset tools declare (``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``enum``, ``minimum``/``maximum``,
``minLength``/``maxLength``, ``maxItems``, ``pattern``) and names the path of every problem,
so a bad tool input is reported as ``input.text: expected a string, got 3``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Schema = Mapping[str, Any]

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}

SchemaOf = Callable[[Any], Schema | None]
"""Given a value, the schema it is known to have (a reference to another step's output), or
``None`` for a literal value that is checked as it is."""


def type_name(value: Any) -> str:
    """The JSON type of ``value``, as a schema would name it."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _TYPES[name](value):
            return name
    return type(value).__name__


def declared_types(schema: Schema) -> set[str]:
    """The types ``schema`` allows (every type when it names none)."""
    kind = schema.get("type")
    if kind is None:
        return set(_TYPES)
    return {kind} if isinstance(kind, str) else set(kind)


def compatible(actual: Schema, expected: Schema) -> bool:
    """Whether a value of schema ``actual`` may stand where ``expected`` is asked.

    Any value fits a string (it is rendered as text); an integer fits a number.
    """
    wanted = declared_types(expected)
    if "string" in wanted:
        return True
    have = declared_types(actual)
    if "number" in wanted:
        wanted = wanted | {"integer"}
    return bool(have & wanted)


def validate(
    value: Any, schema: Schema, path: str = "input", *, schema_of: SchemaOf | None = None
) -> list[str]:
    """Every way ``value`` breaks ``schema``, each message starting with its path."""
    problems: list[str] = []
    _check(value, schema, path, problems, schema_of)
    return problems


def _check(
    value: Any, schema: Schema, path: str, problems: list[str], schema_of: SchemaOf | None
) -> None:
    known = schema_of(value) if schema_of is not None else None
    if known is not None:
        if not compatible(known, schema):
            problems.append(
                f"{path}: the referenced value is {'/'.join(sorted(declared_types(known)))}, "
                f"expected {'/'.join(sorted(declared_types(schema)))}"
            )
        return
    wanted = declared_types(schema)
    if not any(_TYPES[t](value) for t in wanted if t in _TYPES):
        expected = " or ".join(sorted(wanted))
        problems.append(f"{path}: expected {_article(expected)}, got {_show(value)}")
        return
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: must be one of {list(schema['enum'])!r}, got {_show(value)}")
    if isinstance(value, dict):
        _check_object(value, schema, path, problems, schema_of)
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            problems.append(f"{path}: at most {schema['maxItems']} items, got {len(value)}")
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                _check(item, items, f"{path}[{index}]", problems, schema_of)
    elif isinstance(value, str):
        _check_string(value, schema, path, problems)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{path}: must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{path}: must be <= {schema['maximum']}, got {value}")


def _check_object(
    value: dict[str, Any],
    schema: Schema,
    path: str,
    problems: list[str],
    schema_of: SchemaOf | None,
) -> None:
    properties: Mapping[str, Schema] = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            problems.append(f"{path}.{name}: required")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], f"{path}.{name}", problems, schema_of)
        elif extra is False:
            known = ", ".join(sorted(properties)) or "none"
            problems.append(f"{path}.{name}: unknown key (known: {known})")
        elif isinstance(extra, Mapping):
            _check(item, extra, f"{path}.{name}", problems, schema_of)


def _check_string(value: str, schema: Schema, path: str, problems: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(f"{path}: at least {schema['minLength']} characters, got {len(value)}")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append(f"{path}: at most {schema['maxLength']} characters, got {len(value)}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        problems.append(f"{path}: does not match {schema['pattern']!r}")


def property_schema(schema: Schema, field: str) -> Schema | None:
    """The schema of ``field`` (dotted) inside an object schema, or ``None`` if undeclared."""
    current: Schema | None = schema
    for part in field.split("."):
        if current is None:
            return None
        properties = current.get("properties")
        if not isinstance(properties, Mapping) or part not in properties:
            return None
        current = properties[part]
    return current


def _article(text: str) -> str:
    return f"an {text}" if text[:1] in "aeiou" else f"a {text}"


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type_name(value)} {text if len(text) <= 40 else text[:39] + '…'}"


__all__ = ["compatible", "declared_types", "property_schema", "type_name", "validate"]
