"""What every simulated wire format provides to the simulator app."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from llmrelay.simulator.config import Api, ModelSpec
from llmrelay.simulator.engine import Reply, SimRequest
from llmrelay.simulator.state import Refusal, Window

Headers = Sequence[tuple[str, str]]


class ErrorKind(enum.Enum):
    AUTH_MISSING = "auth_missing"
    AUTH_INVALID = "auth_invalid"
    NOT_FOUND = "not_found"
    BAD_REQUEST = "bad_request"
    CONTEXT = "context_window"
    MAX_TOKENS = "max_tokens"
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "500"
    UNAVAILABLE = "503"
    OVERLOADED = "overloaded"


@dataclass(slots=True)
class ErrorContext:
    """Details an error body may quote."""

    model: str = ""
    message: str = ""
    input_tokens: int = 0
    max_tokens: int = 0
    limit: int = 0
    refusal: Refusal | None = None
    api: Api | Literal[""] = ""
    """The api of the model the request named ("" when unknown): an OpenAI-wire error reads
    differently from vLLM or llama.cpp."""


@dataclass(slots=True)
class HttpError:
    status: int
    body: Any
    headers: Headers = field(default_factory=list)


class BadInput(Exception):
    """The request body does not follow the wire format; the message says why."""


class StreamWriter(Protocol):
    """Frames of one streamed answer, in the wire format's own framing."""

    def opening(self) -> bytes: ...
    def text(self, piece: str) -> bytes: ...
    def closing(self) -> bytes:
        """Tool calls, finish reason, usage and the end marker."""
        ...

    def error(self) -> bytes:
        """An error reported inside the 200 stream."""
        ...


class WireApi(Protocol):
    """One provider's HTTP API as the simulator serves it."""

    api: ClassVar[Api]
    serves: ClassVar[frozenset[Api]]
    stream_content_type: ClassVar[str]

    def api_key(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        """The caller's key; ``None`` when the API has no authentication."""
        ...

    def missing_key(self) -> str | None:
        """The key to account a keyless request to, or ``None`` if a key is required."""
        ...

    def parse(self, body: Any, path: dict[str, str], query: dict[str, str]) -> SimRequest: ...

    def error(self, kind: ErrorKind, ctx: ErrorContext) -> HttpError: ...

    def limit_headers(self, window: Window) -> Headers: ...

    def render(self, request: SimRequest, reply: Reply, response_id: str) -> Any: ...

    def stream(self, request: SimRequest, reply: Reply, response_id: str) -> StreamWriter: ...

    def models(self, specs: list[ModelSpec]) -> Any: ...


def text_of(content: Any) -> str:
    """Plain text of a string or a list of typed parts (``{"type": "text", "text": ...}``)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise BadInput(f"content must be a string or a list of parts, not {type(content).__name__}")


def require(body: Any, key: str, kind: type, where: str = "") -> Any:
    """``body[key]`` checked to be of ``kind``; a clear :class:`BadInput` otherwise."""
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    if key not in body:
        raise BadInput(f"{where}{key}: Field required")
    value = body[key]
    if not isinstance(value, kind):
        raise BadInput(f"{where}{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value
