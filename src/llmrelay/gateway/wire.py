"""What both APIs share: body decoding with field-naming errors, and the one mapping from
llmrelay's errors to an HTTP status and a kind of error each API names in its own words.

Every failure a caller sees is an :class:`ApiError`. Which status answers which error:

=========================================  ======  =====================================
error                                      status  why
=========================================  ======  =====================================
malformed body, bad field, every model's   400     the request is the caller's to fix
context window too small for the prompt
no key, unknown / revoked / expired key    401
key not allowed the model group            403
unknown model group, path or key            404
body larger than ``max_body_bytes``        413
over the caller's key RPM / TPM            429     with ``retry-after``; only the caller's
                                                   own limit ever answers 429
a budget cannot afford the request         429     OpenAI's ``insufficient_quota`` (400
                                                   ``invalid_request_error`` for Anthropic,
                                                   as it answers an empty credit balance)
every deployment failed or is busy         503     with ``retry-after``
no answer within ``request_timeout_s``     504
a provider refused the gateway's own       502     the operator's to fix, not the caller's
credentials, or answered garbage
anything unexpected                        500     logged; the answer has no traceback
=========================================  ======  =====================================
"""

from __future__ import annotations

import math
import re
from enum import Enum
from typing import Any, TypeVar

import msgspec

from llmrelay.errors import (
    AllModelsExhausted,
    BadRequest,
    BudgetExceeded,
    ContextWindowExceeded,
    LLMRelayError,
    ProviderError,
    Timeout,
    UnknownModelGroup,
)
from llmrelay.gateway.keys import KeyNotFound

T = TypeVar("T")

_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_FIELD = re.compile(r"([A-Za-z_][\w.\[\]]*): ")
"""The field a :class:`BadRequest` names first (``messages.0.content: …``)."""


class Kind(Enum):
    """What went wrong, before an API names it."""

    INVALID = "invalid"
    CONTEXT = "context"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RATE_LIMIT = "rate_limit"
    BUDGET = "budget"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    UPSTREAM = "upstream"
    INTERNAL = "internal"


STATUS: dict[Kind, int] = {
    Kind.INVALID: 400,
    Kind.CONTEXT: 400,
    Kind.AUTHENTICATION: 401,
    Kind.PERMISSION: 403,
    Kind.NOT_FOUND: 404,
    Kind.TOO_LARGE: 413,
    Kind.RATE_LIMIT: 429,
    Kind.BUDGET: 429,
    Kind.UNAVAILABLE: 503,
    Kind.TIMEOUT: 504,
    Kind.UPSTREAM: 502,
    Kind.INTERNAL: 500,
}


class ApiError(Exception):
    """A failure to answer with: its kind, a message for the caller, headers to add."""

    def __init__(
        self,
        kind: Kind,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.status = status or STATUS[kind]

    def headers(self) -> list[tuple[bytes, bytes]]:
        extra = []
        if self.retry_after is not None:
            extra.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        if self.kind in (Kind.BUDGET, Kind.CONTEXT) or self.status < 429:
            extra.append((b"x-should-retry", b"false"))  # the SDKs' retry hint
        return extra


def decode_body(decoder: msgspec.json.Decoder[T], body: bytes) -> T:
    """``body`` decoded, or :class:`BadRequest` naming the field: ``max_tokens: Expected
    `int`, got `str```."""
    if not body:
        raise BadRequest("body: a JSON object is required")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        text = str(exc)
        found = _AT.search(text)
        where = found.group(1) if found else ""
        text = _AT.sub("", text)
        unknown = re.fullmatch(r"Object contains unknown field `([^`]*)`", text)
        if unknown:
            name = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise BadRequest(f"{name}: unrecognized request argument") from None
        raise BadRequest(f"{where or 'body'}: {text}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body: not valid JSON ({exc})") from None


def api_error(exc: BaseException) -> ApiError:
    """The answer for an error raised while serving a call."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BudgetExceeded):
        return ApiError(Kind.BUDGET, str(exc))
    if isinstance(exc, KeyNotFound):
        return ApiError(Kind.NOT_FOUND, str(exc))
    if isinstance(exc, UnknownModelGroup):
        return ApiError(Kind.NOT_FOUND, str(exc.args[0]), param="model")
    if isinstance(exc, AllModelsExhausted):
        errors = {a.error for a in exc.attempts if a.error is not None}
        if errors == {ContextWindowExceeded.__name__}:
            return ApiError(Kind.CONTEXT, f"the prompt does not fit any model of this group: {exc}")
        return ApiError(Kind.UNAVAILABLE, str(exc), retry_after=1.0)
    if isinstance(exc, BadRequest):
        field = _FIELD.match(exc.message)
        return ApiError(Kind.INVALID, exc.message, param=field.group(1) if field else None)
    if isinstance(exc, ContextWindowExceeded):  # no deployment's window holds it
        return ApiError(Kind.CONTEXT, f"the prompt does not fit any model of this group: "
                        f"{exc.message}")  # fmt: skip
    if isinstance(exc, Timeout):
        return ApiError(Kind.TIMEOUT, f"the provider did not answer in time: {exc.message}")
    if isinstance(exc, ProviderError):
        return ApiError(Kind.UPSTREAM, f"{type(exc).__name__} from {exc.deployment}: {exc.message}")
    if isinstance(exc, LLMRelayError):
        return ApiError(Kind.INVALID, str(exc))
    return ApiError(Kind.INTERNAL, "internal error; the gateway's log has the details")


def to_json(value: Any) -> bytes:
    return _encode(value)


_encode = msgspec.json.Encoder().encode

__all__ = ["STATUS", "ApiError", "Kind", "api_error", "decode_body", "to_json"]
