"""``media:`` — the settings of the file-name parser, a section of ``llmrelay.yaml``.

.. code-block:: yaml

    media:
      threshold: 0.9          # below this overall confidence a name goes to the LLM chain
      batch_size: 25          # names per LLM call
      chain:                  # model groups of ``models:``, cheapest first
        - {group: cheap, trust: 0.8}
        - {group: strong, trust: 0.9}
      cache: {backend: sqlite, path: ~/.cache/llmrelay/media.sqlite3}
      movie_template: "{title} ({year})/{title} ({year}){ext}"

Validated by :mod:`llmrelay.config`'s loader like every section: keys are
case-insensitive, ``${VAR}`` is substituted, unknown keys are errors naming the key. This
module imports nothing of the facade, so the loader can import it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_EPISODE_TEMPLATE = (
    "{title}/Season {season:02}/{title} - S{season:02}E{episode:02}{ - episode_title}{ext}"
)
DEFAULT_MOVIE_TEMPLATE = "{title} ({year})/{title} ({year}){ext}"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChainStep(_Section):
    """One model group of the refinement chain."""

    group: str = Field(min_length=1)
    """A model group of ``models:`` (its name)."""
    trust: float = Field(default=0.85, gt=0, lt=1)
    """The confidence given to a field this group changed (and the name confirms)."""

    @field_validator("group")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class MediaCacheSettings(_Section):
    """Where parsed names are kept: SQLite on this machine, or Redis shared by many."""

    backend: Literal["sqlite", "redis", "none"] = "sqlite"
    path: Path = Path("~/.cache/llmrelay/media.sqlite3")
    """The SQLite file (``backend: sqlite``)."""
    redis_url: str | None = None
    """``redis://…`` (``backend: redis``); unset: the top-level ``redis_url``."""
    ttl_s: float | None = Field(default=None, gt=0)
    """How long an entry lives; unset: until the parser's version changes."""

    @field_validator("redis_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class MediaSettings(_Section):
    """``media:`` — confidence threshold, LLM chain, batching, cache and rename templates."""

    threshold: float = Field(default=0.9, ge=0, le=1)
    """Names whose overall confidence is below this go to the chain."""
    batch_size: int = Field(default=25, ge=1, le=200)
    """Names per LLM call."""
    concurrency: int = Field(default=4, ge=1, le=64)
    """LLM calls in flight at once."""
    chain: list[ChainStep] = Field(default_factory=list)
    """Model groups tried in order on the names still below the threshold; empty: no LLM."""
    max_name_length: int = Field(default=1024, ge=16, le=65536)
    """Longer names are refused (a path component is at most 255 bytes on most systems)."""
    cache: MediaCacheSettings = Field(default_factory=MediaCacheSettings)
    episode_template: str = DEFAULT_EPISODE_TEMPLATE
    movie_template: str = DEFAULT_MOVIE_TEMPLATE
    health_ttl_s: float = Field(default=300, ge=0)
    """How long a health probe's answer is reused."""

    @field_validator("episode_template", "movie_template")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        from llmrelay.media.template import check_template  # no facade import: safe here

        check_template(value)  # ValueError naming the unknown field
        return value

    @model_validator(mode="after")
    def _distinct_groups(self) -> MediaSettings:
        groups = [step.group for step in self.chain]
        twice = sorted({g for g in groups if groups.count(g) > 1})
        if twice:
            raise ValueError(f"chain: group {twice[0]!r} is listed twice")
        return self


__all__ = [
    "DEFAULT_EPISODE_TEMPLATE",
    "DEFAULT_MOVIE_TEMPLATE",
    "ChainStep",
    "MediaCacheSettings",
    "MediaSettings",
]
