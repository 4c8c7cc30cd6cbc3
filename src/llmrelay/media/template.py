"""Rename templates: ``{title}/Season {season:02}/{title} - S{season:02}E{episode:02}{ext}``.

``{field}`` or ``{field:spec}`` (a Python format spec) is required: a name without that
field is not renamed. ``{ - field}`` — text before the field name — is optional: the text
and the value appear only when the field has one. Values are made safe as path components
(no separators, no control characters); ``/`` in the template itself makes folders.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_PART = re.compile(r"\{([^{}]*)\}")
_INNER = re.compile(r"^(?P<prefix>[^a-z_]*?)(?P<field>[a-z_]+)(?::(?P<spec>[^{}]*))?$")
_UNSAFE = re.compile(r'[\x00-\x1f<>:"/\\|?*]+')

FIELDS = frozenset({
    "title", "year", "season", "episode", "episode_title", "date", "resolution", "source",
    "video_codec", "release_group", "ext",
})  # fmt: skip
"""What a template may use; ``season`` / ``episode`` are the first of a range."""


class MissingField(ValueError):
    """A required field of the template has no value for this name."""


def check_template(template: str) -> None:
    """``ValueError`` naming what is wrong with ``template`` (unknown fields, bad specs)."""
    if not template.strip():
        raise ValueError("empty template")
    for match in _PART.finditer(template):
        inner = _INNER.match(match.group(1))
        if inner is None:
            raise ValueError(f"cannot read {match.group()!r}: expected {{field}}, "
                             f"{{field:spec}} or {{ - field}}")  # fmt: skip
        if inner["field"] not in FIELDS:
            known = ", ".join(sorted(FIELDS))
            raise ValueError(f"unknown field {inner['field']!r} in {match.group()!r} "
                             f"(known: {known})")  # fmt: skip
        try:
            format(1 if inner["field"] in ("year", "season", "episode") else "x",
                   inner["spec"] or "")  # fmt: skip
        except ValueError as exc:
            raise ValueError(f"bad format {inner['spec']!r} in {match.group()!r}: {exc}") from None
    rest = _PART.sub("", template)
    if "{" in rest or "}" in rest:
        raise ValueError("unbalanced { or } in the template")


def _safe(value: str) -> str:
    text = _UNSAFE.sub(" ", value).strip(" .")
    return " ".join(text.split())


def render(template: str, values: Mapping[str, object]) -> str:
    """The relative path for ``values``; :class:`MissingField` names a missing one."""

    def part(match: re.Match[str]) -> str:
        inner = _INNER.match(match.group(1))
        assert inner is not None  # checked when the settings were read
        value = values.get(inner["field"])
        if value is None or value == "":
            if inner["prefix"]:
                return ""
            raise MissingField(f"no {inner['field']}")
        text = format(value, inner["spec"] or "") if inner["spec"] else str(value)
        return inner["prefix"] + (text if inner["field"] == "ext" else _safe(text))

    path = _PART.sub(part, template)
    components = [c.strip() for c in path.split("/")]
    if any(c in ("", ".", "..") for c in components):
        raise MissingField(f"the template gives an unusable path {path!r}")
    return "/".join(components)


__all__ = ["FIELDS", "MissingField", "check_template", "render"]
