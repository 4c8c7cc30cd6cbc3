"""LLM refinement: names the parser is unsure of, many per call, through SmartLLM.

Each call carries a batch of names (with the parser's reading and the words it could not
place) and asks, with a JSON schema, for one item per name, matched back by ``index``. An
item that is missing or malformed is asked again alone, so one bad item never costs the
others. Every answer is checked against the name before it is used: a title the name does
not contain, or a number not written in it, is rejected — a model cannot invent a result.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from llmrelay import SmartLLM
from llmrelay.errors import ConfigError, LLMRelayError, UnknownModelGroup
from llmrelay.media.config import ChainStep
from llmrelay.media.metrics import MediaMetrics
from llmrelay.media.result import FieldInfo, MediaResult

JUDGED = ("title", "season", "episode", "year")
"""The fields whose least confidence is a refined result's overall confidence."""

SYSTEM_PROMPT = (
    "You read video file names. For each item, say what the name means: the show or film "
    "title exactly as written in the name (words from the name only, without release "
    "group, quality or language tags), the type (episode or movie), the year if the name "
    "has one, and the season and episode numbers written in the name (a bare 3-4 digit "
    "anime number such as 1071 is one absolute episode, not season 10 episode 71). Answer "
    "every item, with its index. Use null or [] when the name does not say."
)

ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "type": {"type": "string", "enum": ["episode", "movie"]},
                    "title": {"type": ["string", "null"]},
                    "year": {"type": ["integer", "null"]},
                    "season": {"type": "array", "items": {"type": "integer"}},
                    "episode": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["index", "type", "title", "year", "season", "episode"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["items"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "media_names", "schema": ANSWER_SCHEMA, "strict": True},
}


class Item(msgspec.Struct, forbid_unknown_fields=True):
    """One name's answer, as the schema asks for it."""

    index: int
    type: Literal["episode", "movie"]
    title: str | None
    year: int | None
    season: list[int]
    episode: list[int]


class _Answer(msgspec.Struct):
    items: list[msgspec.Raw]


_ITEM = msgspec.json.Decoder(Item)
_ANSWER = msgspec.json.Decoder(_Answer)
_ENCODE = msgspec.json.Encoder()
_DIGITS = re.compile(r"\d+")
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(slots=True)
class Pending:
    """A result the chain may still change, and the words the parser could not place."""

    result: MediaResult
    unexplained: list[str] = field(default_factory=list)
    failed: bool = False
    """An LLM call for it failed: the result is not final and is not cached."""


def _compact(text: str) -> str:
    return _NOT_WORD.sub("", text.casefold())


def supported(name: str, item: Item) -> dict[str, bool]:
    """Per field, whether the name itself supports the item's value.

    Season and episode stand or fall together: half of a numbering is not a reading.
    """
    runs = _DIGITS.findall(name)

    def written(number: int) -> bool:
        return any(str(number) in run for run in runs)

    title = item.title.strip() if item.title else ""
    numbering = all(written(n) for n in (*item.season, *item.episode))  # judged as one
    return {
        "title": not title or (bool(_compact(title)) and _compact(title) in _compact(name)),
        "season": numbering,
        "episode": numbering,
        "year": item.year is None or str(item.year) in runs,
        "type": True,
    }


def prompt_for(batch: Sequence[Pending]) -> str:
    """The user message: one JSON line per name, with the parser's reading."""
    lines = ["Items:"]
    for index, pending in enumerate(batch):
        r = pending.result
        guess = {"title": r.title, "type": r.type, "year": r.year,
                 "season": r.season, "episode": r.episode or r.absolute_episode}  # fmt: skip
        entry = {"index": index, "name": r.name, "parser": guess}
        if pending.unexplained:
            entry["unexplained"] = pending.unexplained
        lines.append(_ENCODE.encode(entry).decode())
    return "\n".join(lines)


def decode_items(text: str, size: int) -> dict[int, Item]:
    """The well-formed items of an answer, by index; missing or broken ones are left out."""
    try:
        answer = _ANSWER.decode(text)
    except (msgspec.DecodeError, ValueError):
        return {}
    found: dict[int, Item] = {}
    for raw in answer.items:
        try:
            item = _ITEM.decode(raw)
        except (msgspec.DecodeError, ValueError):
            continue
        if 0 <= item.index < size and item.index not in found:
            found[item.index] = item
    return found


def _value(result: MediaResult, name: str) -> Any:
    if name == "episode":
        return result.episode or result.absolute_episode
    return getattr(result, name)


def _same(name: str, ours: Any, theirs: Any) -> bool:
    if name == "title":
        return _compact(ours or "") == _compact(theirs or "")
    if name in ("season", "episode"):
        return sorted(ours) == sorted(theirs)
    return bool(ours == theirs)


def apply(pending: Pending, item: Item, step: ChainStep, metrics: MediaMetrics) -> None:
    """Fold a checked answer into the result and recompute its confidence."""
    result = pending.result
    ok = supported(result.name, item)
    source = f"llm:{step.group}"
    for name in (*JUDGED, "type"):
        theirs = getattr(item, name)
        if name == "title" and not theirs:
            continue  # no answer is not an answer that the title is missing
        info = result.fields.get(name, FieldInfo(confidence=result.confidence))
        if _same(name, _value(result, name), theirs):
            agreed = 1 - (1 - info.confidence) * (1 - step.trust)
            result.fields[name] = FieldInfo(confidence=round(agreed, 4),
                                            source=f"{info.source},{source}")  # fmt: skip
            continue
        if not ok[name]:
            metrics.rejected_answers += 1
            continue
        if name == "episode":
            result.absolute_episode = theirs if not item.season else []
            result.episode = [] if not item.season else theirs
        else:
            setattr(result, name, theirs.strip() if isinstance(theirs, str) else theirs)
        result.fields[name] = FieldInfo(confidence=step.trust, source=source)
    result.confidence = min(result.fields[f].confidence for f in JUDGED if f in result.fields)


class Refiner:
    """Runs the chain: each model group, in order, on the names still below the threshold."""

    def __init__(
        self,
        llm: SmartLLM,
        chain: Sequence[ChainStep],
        *,
        threshold: float,
        batch_size: int,
        concurrency: int,
        metrics: MediaMetrics,
    ) -> None:
        self.llm = llm
        self.chain = list(chain)
        self.threshold = threshold
        self.batch_size = batch_size
        self.metrics = metrics
        self._slots = asyncio.Semaphore(concurrency)

    async def refine(self, items: Sequence[Pending]) -> None:
        """Refine ``items`` in place, stopping for each once it is confident enough."""
        for position, step in enumerate(self.chain):
            low = [p for p in items if p.result.confidence < self.threshold]
            if not low:
                return
            batches = [low[i : i + self.batch_size] for i in range(0, len(low), self.batch_size)]
            try:
                await asyncio.gather(*(self._batch(step, batch) for batch in batches))
            except UnknownModelGroup as exc:
                raise ConfigError(f"media.chain.{position}.group: {exc}") from None

    async def _batch(self, step: ChainStep, batch: Sequence[Pending]) -> None:
        answered = await self._ask(step, batch)
        if answered is None:
            for pending in batch:
                pending.failed = True
            return
        for index, pending in enumerate(batch):
            item = answered.get(index)
            if item is None and len(batch) > 1:
                self.metrics.retried_alone += 1
                alone = await self._ask(step, [pending])
                item = alone.get(0) if alone else None
            if item is None:
                pending.failed = True  # asked and not answered: try again next time
                continue
            apply(pending, item, step, self.metrics)
            pending.failed = False
            self.metrics.refined += 1

    async def _ask(self, step: ChainStep, batch: Sequence[Pending]) -> dict[int, Item] | None:
        """The answer's items by index; ``None`` when the call itself failed."""
        async with self._slots:
            self.metrics.llm_calls += 1
            try:
                response = await self.llm.ainvoke(
                    prompt_for(batch),
                    model=step.group,
                    system=SYSTEM_PROMPT,
                    response_format=RESPONSE_FORMAT,
                    temperature=0,
                    max_tokens=64 + 48 * len(batch),
                )
            except UnknownModelGroup:
                raise
            except LLMRelayError:
                self.metrics.llm_failures += 1
                return None
        self.metrics.input_tokens += response.usage.input_tokens
        self.metrics.output_tokens += response.usage.output_tokens
        self.metrics.cost_usd += response.cost_usd
        self.metrics.llm_latency_s += response.latency_s
        return decode_items(response.content, len(batch))


__all__ = [
    "ANSWER_SCHEMA",
    "JUDGED",
    "RESPONSE_FORMAT",
    "SYSTEM_PROMPT",
    "Item",
    "Pending",
    "Refiner",
    "apply",
    "decode_items",
    "prompt_for",
    "supported",
]
