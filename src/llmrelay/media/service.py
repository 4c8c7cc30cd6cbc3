"""``MediaParser``: cache, deterministic parse, LLM chain — and the batch API on top.

:func:`parse_batch` is what ``POST /api/v1/media/parse`` calls: a batch of names in, one
item per name out (a result, or an error saying what is wrong with that name), in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from llmrelay import SmartLLM
from llmrelay.errors import LLMRelayError
from llmrelay.media.analyze import Analyzer
from llmrelay.media.cache import MediaCache, cache_key, open_cache
from llmrelay.media.config import MediaSettings
from llmrelay.media.metrics import MediaMetrics
from llmrelay.media.parse import PARSER_VERSION, MediaInputError, check_name
from llmrelay.media.refine import (
    RESPONSE_FORMAT,
    SYSTEM_PROMPT,
    Pending,
    Refiner,
    decode_items,
    prompt_for,
)
from llmrelay.media.result import MediaResult

PROBE_NAME = "Breaking.Bad.S01E02.720p.HDTV.x264-GRP.mkv"


class ParseRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A batch of names; ``refine: false`` keeps to the deterministic parse."""

    names: list[str]
    refine: bool = True


class ParseItem(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One name's outcome: ``result``, or ``error`` saying why there is none."""

    index: int
    name: str
    result: MediaResult | None = None
    error: str | None = None


class ParseResponse(msgspec.Struct, kw_only=True):
    items: list[ParseItem]


class MediaParser:
    """Parses names: cached answers first, then guessit and the confidence model, then the
    LLM chain for names below the threshold. Owns its cache (and, from
    :meth:`from_config`, its SmartLLM); close it once with :meth:`aclose`."""

    def __init__(
        self,
        settings: MediaSettings | None = None,
        *,
        llm: SmartLLM | None = None,
        cache: MediaCache | None = None,
        analyzer: Analyzer | None = None,
        owns_llm: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or MediaSettings()
        self.llm = llm
        self.cache = cache if cache is not None else open_cache(self.settings.cache)
        self.analyzer = analyzer or Analyzer(max_name_length=self.settings.max_name_length)
        self.metrics = MediaMetrics()
        self._owns_llm = owns_llm
        self._clock = clock
        self._health: tuple[float, dict[str, Any]] | None = None
        self._refiner = (
            Refiner(
                llm,
                self.settings.chain,
                threshold=self.settings.threshold,
                batch_size=self.settings.batch_size,
                concurrency=self.settings.concurrency,
                metrics=self.metrics,
            )
            if llm is not None and self.settings.chain
            else None
        )

    @classmethod
    def from_config(
        cls, path: str | Path, *, cache: MediaCache | None = None, llm: bool = True
    ) -> MediaParser:
        """From ``llmrelay.yaml``: its ``media:`` section and, for the chain, its models
        (``llm=False``: the deterministic parse only, no SmartLLM is made)."""
        from llmrelay.config import check_groups, load_settings  # validates media: too

        relay = load_settings(path, sections={"media": MediaSettings})
        settings = relay.media if isinstance(relay.media, MediaSettings) else MediaSettings()
        groups = {f"media.chain.{i}.group": step.group for i, step in enumerate(settings.chain)}
        check_groups(relay, str(path), groups)
        client = SmartLLM.from_settings(relay, source=str(path)) if llm and settings.chain else None
        if cache is None:
            cache = open_cache(settings.cache, relay.redis_url)
        return cls(settings, llm=client, cache=cache, owns_llm=True)

    def _variant(self, refine: bool) -> str:
        if not refine or self._refiner is None:
            return "parser"
        chain = ",".join(f"{s.group}:{s.trust}" for s in self.settings.chain)
        return f"{self.analyzer.model.calibration.parser_version};{self.settings.threshold};{chain}"

    async def parse(self, name: str, *, refine: bool = True) -> MediaResult:
        """One name; :class:`MediaInputError` when it is not a name."""
        (outcome,) = await self.parse_many([name], refine=refine)
        if isinstance(outcome, MediaInputError):
            raise outcome
        return outcome

    async def parse_many(
        self, names: Sequence[str], *, refine: bool = True
    ) -> list[MediaResult | MediaInputError]:
        """Every name's result (or the reason it has none), in order."""
        started = time.perf_counter()
        outcomes: list[MediaResult | MediaInputError | None] = [None] * len(names)
        wanted: dict[str, list[int]] = {}  # normalized name -> positions
        for position, name in enumerate(names):
            try:
                wanted.setdefault(check_name(name, max_length=self.settings.max_name_length),
                                  []).append(position)  # fmt: skip
            except MediaInputError as exc:
                outcomes[position] = exc
        self.metrics.names += len(names)
        self.metrics.rejected += len(names) - sum(len(p) for p in wanted.values())
        variant = self._variant(refine)
        keys = {name: cache_key(name, PARSER_VERSION, variant) for name in wanted}
        hits = await self.cache.get_many(list(keys.values()))
        fresh: dict[str, Pending] = {}
        for count, (name, key) in enumerate(keys.items()):
            hit = hits.get(key)
            if hit is not None:
                hit.cached = True
                self.metrics.cache_hits += len(wanted[name])
                self._place(outcomes, wanted[name], hit)
                continue
            result, unexplained = self.analyzer.analyze(name)
            fresh[name] = Pending(result, unexplained)
            if count % 64 == 63:
                await asyncio.sleep(0)  # a long batch leaves the loop room for other work
        self.metrics.parsed += len(fresh)
        if refine and self._refiner is not None and fresh:
            await self._refiner.refine(list(fresh.values()))
        await self.cache.put_many(
            {keys[name]: p.result for name, p in fresh.items() if not p.failed}
        )
        for name, pending in fresh.items():
            self._place(outcomes, wanted[name], pending.result)
        self.metrics.parse_latency_s += time.perf_counter() - started
        done = [o for o in outcomes if o is not None]
        for outcome in done:
            if isinstance(outcome, MediaResult):
                self.metrics.observe_confidence(outcome.confidence)
        return done

    @staticmethod
    def _place(
        outcomes: list[MediaResult | MediaInputError | None],
        positions: list[int],
        result: MediaResult,
    ) -> None:
        for i, position in enumerate(positions):
            outcomes[position] = result if i == 0 else msgspec.structs.replace(result)

    async def health(self) -> dict[str, Any]:
        """Each chain group's answer to a probe name (reused for ``health_ttl_s``)."""
        now = self._clock()
        if self._health is not None and now - self._health[0] < self.settings.health_ttl_s:
            return self._health[1]
        groups: dict[str, Any] = {}
        if self.llm is not None:
            probe = Pending(self.analyzer.analyze(PROBE_NAME)[0])
            for step in self.settings.chain:
                try:
                    response = await self.llm.ainvoke(
                        prompt_for([probe]), model=step.group, max_tokens=128,
                        system=SYSTEM_PROMPT, response_format=RESPONSE_FORMAT,
                    )  # fmt: skip
                except LLMRelayError as exc:
                    groups[step.group] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    continue
                answered = bool(decode_items(response.content, 1))
                groups[step.group] = {"ok": True, "answers_schema": answered,
                                      "latency_s": round(response.latency_s, 4)}  # fmt: skip
        report = {"ok": all(g["ok"] for g in groups.values()), "groups": groups,
                  "parser_version": PARSER_VERSION}  # fmt: skip
        self._health = (now, report)
        return report

    async def aclose(self) -> None:
        """Close the cache, and the SmartLLM when this parser made it."""
        await self.cache.aclose()
        if self._owns_llm and self.llm is not None:
            await self.llm.aclose()

    async def __aenter__(self) -> MediaParser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def parse_batch(parser: MediaParser, request: ParseRequest) -> ParseResponse:
    """The ``POST /api/v1/media/parse`` handler's work: a batch in, a batch out."""
    outcomes = await parser.parse_many(request.names, refine=request.refine)
    items = [
        ParseItem(index=i, name=name, error=str(outcome))
        if isinstance(outcome, MediaInputError)
        else ParseItem(index=i, name=name, result=outcome)
        for i, (name, outcome) in enumerate(zip(request.names, outcomes, strict=True))
    ]
    return ParseResponse(items=items)


__all__ = [
    "PROBE_NAME",
    "MediaParser",
    "ParseItem",
    "ParseRequest",
    "ParseResponse",
    "parse_batch",
]
