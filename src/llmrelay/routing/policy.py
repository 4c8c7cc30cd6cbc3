"""Which deployments to try for a request, and where to go when one fails.

A :class:`ModelGroup` is the name callers use: primary deployments (load-balanced among
themselves), fallbacks in order, and optional content-policy fallbacks. A
:class:`FallbackPolicy` turns it into an ordered list of candidates and, after a failure,
decides what remains to try:

- ``sequential``: the order as configured, whatever the error.
- ``smart`` (default): a rate limit moves deployments on another provider or account to the
  front; a context-window error keeps only larger windows, smallest first; a content-policy
  refusal goes to the configured content fallbacks.
- ``cost``: like ``smart``, but the first order is cheapest first for the request's size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from llmrelay.errors import ContentFiltered, ContextWindowExceeded, ProviderError, RateLimited
from llmrelay.routing.balance import Balancer, RoundRobin
from llmrelay.routing.candidate import Candidate


@dataclass(eq=False)
class ModelGroup:
    name: str
    primary: list[Candidate]
    fallbacks: list[Candidate] = field(default_factory=list)
    content_fallbacks: list[Candidate] = field(default_factory=list)
    balancer: Balancer = field(default_factory=RoundRobin)
    downgrade: list[ModelGroup] = field(default_factory=list)
    """Groups whose deployments serve this group's requests first when a budget is past
    its downgrade share (none: this group's own, cheapest first)."""

    def members(self) -> list[Candidate]:
        return unique([*self.primary, *self.fallbacks, *self.content_fallbacks])


class FallbackPolicy(Protocol):
    def initial(
        self, group: ModelGroup, input_tokens: int, output_tokens: int
    ) -> list[Candidate]: ...

    def after(
        self,
        error: ProviderError,
        failed: Candidate,
        remaining: Sequence[Candidate],
        group: ModelGroup,
    ) -> list[Candidate] | None:
        """What to try next; ``None`` means raise ``error`` (nothing to gain elsewhere)."""
        ...


def unique(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Each candidate once (a deployment may be listed in several roles), order kept."""
    seen: set[int] = set()
    out = []
    for c in candidates:
        if id(c) not in seen:
            seen.add(id(c))
            out.append(c)
    return out


def larger_windows(candidates: Sequence[Candidate], than: int | None) -> list[Candidate]:
    """Candidates whose window is larger than ``than``, smallest first; unknown ones last."""
    known = sorted(
        (c for c in candidates if c.context_window is not None),
        key=lambda c: c.context_window or 0,
    )
    if than is not None:
        known = [c for c in known if (c.context_window or 0) > than]
    return [*known, *(c for c in candidates if c.context_window is None)]


class Sequential:
    """Primary (load-balanced), then fallbacks, in the configured order."""

    def initial(self, group: ModelGroup, input_tokens: int, output_tokens: int) -> list[Candidate]:
        return unique([*group.balancer.order(group.primary), *group.fallbacks])

    def after(
        self,
        error: ProviderError,
        failed: Candidate,
        remaining: Sequence[Candidate],
        group: ModelGroup,
    ) -> list[Candidate] | None:
        if isinstance(error, ContentFiltered):
            return unique([*remaining, *group.content_fallbacks]) or None
        return list(remaining)


class Smart(Sequential):
    """Choose the next deployment by what went wrong."""

    def after(
        self,
        error: ProviderError,
        failed: Candidate,
        remaining: Sequence[Candidate],
        group: ModelGroup,
    ) -> list[Candidate] | None:
        if isinstance(error, RateLimited):
            elsewhere = [c for c in remaining if c.account != failed.account]
            same = [c for c in remaining if c.account == failed.account]
            return [*elsewhere, *same]
        if isinstance(error, ContextWindowExceeded):
            return larger_windows(remaining, failed.context_window)
        if isinstance(error, ContentFiltered):
            return list(group.content_fallbacks) or None
        return list(remaining)


class CostOptimized(Smart):
    """The cheapest deployment for this request first, then the next cheapest."""

    def initial(self, group: ModelGroup, input_tokens: int, output_tokens: int) -> list[Candidate]:
        members = unique([*group.primary, *group.fallbacks])
        return sorted(members, key=lambda c: c.price_for(input_tokens, output_tokens))


POLICIES: Mapping[str, Callable[[], FallbackPolicy]] = MappingProxyType(
    {"sequential": Sequential, "smart": Smart, "cost": CostOptimized}
)


def fallback_policy(name: str) -> FallbackPolicy:
    key = name.strip().lower().replace("-", "_")
    key = {"cost_optimized": "cost"}.get(key, key)
    if key not in POLICIES:
        raise ValueError(f"unknown fallback policy {name!r} (known: {', '.join(POLICIES)})")
    return POLICIES[key]()


__all__ = [
    "POLICIES",
    "CostOptimized",
    "FallbackPolicy",
    "ModelGroup",
    "Sequential",
    "Smart",
    "fallback_policy",
    "larger_windows",
    "unique",
]
