"""Request, response and stream-event structs shared by every layer.

These are ``msgspec.Struct``s because they sit on the hot path of every call: building,
copying and encoding them costs a fraction of what a pydantic model does.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]
ToolChoice = Literal["auto", "none", "required"] | str
"""``auto``, ``none``, ``required``, or the name of the one tool the model must call."""


class CacheControl(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A prompt-cache breakpoint: the prompt up to and including the marked part may be
    cached (Anthropic's ``cache_control``; OpenAI and Gemini cache prefixes on their own)."""

    type: Literal["ephemeral"] = "ephemeral"
    ttl: Literal["5m", "1h"] | None = None


class TextPart(msgspec.Struct, frozen=True, tag="text", tag_field="type"):
    """A text segment of a multi-part message; ``cache_control`` marks a cache breakpoint."""

    text: str
    cache_control: CacheControl | None = None


class ImagePart(msgspec.Struct, frozen=True, tag="image_url", tag_field="type"):
    """An image given by URL (``https://`` or a ``data:`` URL with base64 content)."""

    url: str


ContentPart = TextPart | ImagePart


class ToolCall(msgspec.Struct, frozen=True):
    """One function call asked for by the model; ``arguments`` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str = "{}"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One chat message.

    ``content`` is a string or a list of parts. An assistant message may carry
    ``tool_calls``; a ``tool`` message answers the call named by ``tool_call_id``.
    """

    role: Role
    content: str | list[ContentPart] = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The message's text parts joined; images are left out."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A function the model may call; ``parameters`` is a JSON schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )
    cache_control: CacheControl | None = None


class ResponseFormat(msgspec.Struct, frozen=True, kw_only=True):
    """What shape the answer must take: free text, any JSON object, or a JSON schema."""

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    name: str = "response"
    strict: bool = True


class ChatRequest(msgspec.Struct, kw_only=True):
    """A provider-neutral chat request.

    ``system`` is kept apart from ``messages`` because Anthropic and Gemini take it as a
    top-level field; system-role messages inside ``messages`` are accepted too and merged.
    """

    messages: list[Message]
    model: str = ""
    system: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    stream: bool = False
    user: str | None = None
    metadata: dict[str, str] | None = None
    key: str | None = None
    """The caller's key (a gateway key's id): budgets and the spend ledger count by it;
    never sent to a provider."""
    tags: list[str] | None = None
    """Labels for budgets, the ledger and analytics (a team, a feature); never sent."""

    def system_text(self) -> str | None:
        """The system prompt: ``system`` plus every system-role message, in order."""
        parts = [self.system] if self.system else []
        parts.extend(m.text for m in self.messages if m.role == "system")
        return "\n\n".join(parts) if parts else None

    def chat_messages(self) -> list[Message]:
        """The messages without system-role ones (see :meth:`system_text`)."""
        return [m for m in self.messages if m.role != "system"]


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Token usage as the provider reported it.

    ``input_tokens`` counts every prompt token; ``cached_input_tokens`` (read from the
    provider's prompt cache) and ``cache_write_input_tokens`` (written to it, which
    Anthropic bills apart) are subsets of it. ``reasoning_tokens`` is a subset of
    ``output_tokens``, as in OpenAI's accounting.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False
    """The provider reported no usage (a stream cut short of it): these are estimates."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class RateLimitInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Rate-limit state read from one response's headers; ``None`` where not reported.

    ``*_reset_s`` are seconds from when the response was received until the provider
    reports that bucket full again.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset_s: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_s: float | None = None
    input_tokens_limit: int | None = None
    """Anthropic's separate input-token (ITPM) and output-token (OTPM) limits."""
    input_tokens_remaining: int | None = None
    output_tokens_limit: int | None = None
    output_tokens_remaining: int | None = None
    retry_after_s: float | None = None

    @property
    def is_empty(self) -> bool:
        return self == _NO_LIMITS


_NO_LIMITS = RateLimitInfo()


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One try of one deployment while routing a request."""

    deployment: str
    error: str | None = None
    """The error class's name, or ``None`` for the attempt that answered."""
    message: str = ""
    status_code: int | None = None
    wait_s: float = 0.0
    """Time spent queued by the scheduler before sending."""
    latency_s: float = 0.0
    """Time from sending to the answer (or the failure)."""


class ChatResponse(msgspec.Struct, kw_only=True):
    """A complete answer from one deployment."""

    content: str
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)
    finish_reason: FinishReason = "stop"
    usage: Usage = msgspec.field(default_factory=Usage)
    model: str = ""
    provider: str = ""
    deployment: str = ""
    id: str = ""
    latency_s: float = 0.0
    ttft_s: float | None = None
    rate_limits: RateLimitInfo = msgspec.field(default_factory=RateLimitInfo)
    attempts: list[Attempt] = msgspec.field(default_factory=list)
    """How the router reached this answer: one entry per deployment tried (empty when a
    provider was called directly)."""
    group: str = ""
    cost_micros: int = 0
    """What this answer cost, in integer micro-dollars (0 for a cache hit)."""
    cached: Literal["exact", "semantic"] | None = None
    """Served from llmrelay's response cache, and by which lookup."""
    saved_micros: int = 0
    """On a cache hit: what the cached answer cost when it was first made."""
    request_id: str = ""

    @property
    def cost_usd(self) -> float:
        return self.cost_micros / 1_000_000

    @property
    def fell_back(self) -> bool:
        """Whether a deployment other than the first one tried answered."""
        return len(self.attempts) > 1


class StreamStart(msgspec.Struct, frozen=True, tag="start"):
    """The stream is open: the response id, model and rate limits, when the provider sent them."""

    id: str = ""
    model: str = ""
    rate_limits: RateLimitInfo | None = None
    deployment: str = ""
    """The deployment answering (set by the router)."""


class TextDelta(msgspec.Struct, frozen=True, tag="text"):
    """A piece of answer text."""

    text: str


class ToolCallDelta(msgspec.Struct, frozen=True, tag="tool_call"):
    """A piece of a tool call; ``id`` and ``name`` come with the first piece of ``index``."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class StreamEnd(msgspec.Struct, frozen=True, tag="end"):
    """The stream finished normally; every successful stream ends with exactly one."""

    finish_reason: FinishReason = "stop"
    usage: Usage | None = None


StreamEvent = StreamStart | TextDelta | ToolCallDelta | StreamEnd


class StreamAccumulator:
    """Folds stream events into the :class:`ChatResponse` the same call would have returned."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: dict[int, list[str]] = {}
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self.id = ""
        self.model = ""
        self.end: StreamEnd | None = None

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            self._calls.setdefault(event.index, []).append(event.arguments)
            if event.id:
                self._ids[event.index] = event.id
            if event.name:
                self._names[event.index] = event.name
        elif isinstance(event, StreamStart):
            self.id, self.model = event.id or self.id, event.model or self.model
        else:
            self.end = event

    def response(self) -> ChatResponse:
        """The accumulated answer; call after the :class:`StreamEnd` event."""
        calls = [
            ToolCall(
                id=self._ids.get(i, f"call_{i}"),
                name=self._names.get(i, ""),
                arguments="".join(self._calls[i]) or "{}",
            )
            for i in sorted(self._calls)
        ]
        end = self.end or StreamEnd(finish_reason="error")
        return ChatResponse(
            content="".join(self._text),
            tool_calls=calls,
            finish_reason=end.finish_reason,
            usage=end.usage or Usage(),
            model=self.model,
            id=self.id,
        )


RoutedResponse = ChatResponse
"""What the router returns: a :class:`ChatResponse` with ``attempts``, ``group`` and
``cost_micros`` filled in."""
