"""``LLMBuilder``: a :class:`~llmrelay.SmartLLM` described in code instead of YAML.

It fills the same settings the YAML file does and is validated the same way, so every
keyword a deployment accepts in the file (``base_url``, ``api_key``, ``rpm``, ``tpm``,
``context_window``, ``max_output_tokens``, ``weight``, ``tier``, ``name``…) works here too.
"""

from __future__ import annotations

from typing import Any

from llmrelay.client import SmartLLM
from llmrelay.config import parse_settings


class LLMBuilder:
    """``LLMBuilder().with_tier("tier1").with_primary("openai", "gpt-4o-mini")
    .with_fallback("anthropic", "claude-haiku-4-5").with_context_fallback().build()``"""

    def __init__(self) -> None:
        self._tier = "tier1"
        self._groups: dict[str, dict[str, Any]] = {}
        self._routing: dict[str, Any] = {}
        self._scheduler: dict[str, Any] = {}
        self._redis_url: str | None = None
        self._cost_tracking = True
        self._catalog: dict[str, dict[str, Any]] = {}

    def _group(self, name: str) -> dict[str, Any]:
        return self._groups.setdefault(name, {"primary": [], "fallbacks": []})

    def with_tier(self, tier: str) -> LLMBuilder:
        self._tier = tier
        return self

    def with_primary(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Add a primary deployment (several primaries are load-balanced)."""
        self._group(group)["primary"].append({"provider": provider, "model": model, **deployment})
        return self

    def with_fallback(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Add a fallback, tried after the primaries in the order added."""
        self._group(group)["fallbacks"].append({"provider": provider, "model": model, **deployment})
        return self

    def with_content_fallback(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Where to go when a deployment refuses on content policy."""
        self._group(group).setdefault("content_fallbacks", []).append(
            {"provider": provider, "model": model, **deployment}
        )
        return self

    def with_context_fallback(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        group: str = "default",
        **deployment: Any,
    ) -> LLMBuilder:
        """Route prompts too long for a deployment to a larger window, before any call.

        With ``provider`` and ``model``, that deployment is added as the large-context
        fallback; without, the group's own deployments are ranked by window.
        """
        if provider is not None and model is not None:
            self.with_fallback(provider, model, group=group, **deployment)
        return self

    def with_load_balancing(self, strategy: str, *, group: str = "default") -> LLMBuilder:
        """``round_robin``, ``least_loaded``, ``weighted``, ``latency`` or ``headroom``."""
        self._group(group)["load_balancing"] = strategy
        return self

    def with_policy(self, policy: str) -> LLMBuilder:
        """``smart`` (default), ``sequential`` or ``cost``."""
        self._routing["policy"] = policy
        return self

    def with_retries(self, retries: int, *, backoff_s: float | None = None) -> LLMBuilder:
        self._routing["retries"] = retries
        if backoff_s is not None:
            self._routing["retry_backoff_s"] = backoff_s
        return self

    def with_hedging(
        self, *, after_s: float | None = None, quantile: float | None = None, budget: float = 0.05
    ) -> LLMBuilder:
        """Also send to the next deployment when the first has not answered after ``after_s``
        seconds (or its observed latency ``quantile``, e.g. 0.95); at most ``budget`` of the
        requests are hedged."""
        self._routing.update(hedge_after_s=after_s, hedge_quantile=quantile, hedge_budget=budget)
        return self

    def with_circuit_breaker(self, **breaker: Any) -> LLMBuilder:
        """``failure_threshold``, ``cooldown_s``, ``half_open_probes``."""
        self._routing["breaker"] = breaker
        return self

    def with_scheduler(self, **scheduler: Any) -> LLMBuilder:
        """``max_wait_before_fallback``, ``max_wait_seconds``, ``safety_margin``, …"""
        self._scheduler.update(scheduler)
        return self

    def with_redis(self, url: str) -> LLMBuilder:
        """Share rate limits with every process using the same Redis."""
        self._redis_url = url
        return self

    def with_cost_tracking(self, enabled: bool = True) -> LLMBuilder:
        self._cost_tracking = enabled
        return self

    def with_catalog(self, entries: dict[str, dict[str, Any]]) -> LLMBuilder:
        """Override or add catalog entries (``{"provider/model": {...}}``)."""
        self._catalog.update(entries)
        return self

    def settings(self) -> dict[str, Any]:
        """What ``build`` validates: the same shape as the YAML file."""
        data: dict[str, Any] = {"tier": self._tier, "models": self._groups,
                                "cost_tracking": self._cost_tracking}  # fmt: skip
        if self._routing:
            data["routing"] = self._routing
        if self._scheduler:
            data["scheduler"] = self._scheduler
        if self._redis_url:
            data["redis_url"] = self._redis_url
        if self._catalog:
            data["catalog"] = self._catalog
        return data

    def build(self) -> SmartLLM:
        return SmartLLM.from_settings(
            parse_settings(self.settings(), "LLMBuilder"), source="LLMBuilder"
        )


__all__ = ["LLMBuilder"]
