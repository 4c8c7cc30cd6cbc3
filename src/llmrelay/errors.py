"""The one error taxonomy of llmrelay.

Provider errors are mapped into these classes at the provider boundary
(``llmrelay.providers``) and nowhere else, so every layer above decides on types, never on
status codes or message strings::

    LLMRelayError
     ├── ConfigError                  a configuration file or value is invalid
     ├── UnknownProvider              no adapter is registered under that name
     ├── UnknownModelGroup            no model group is configured under that name
     ├── AllModelsExhausted           every candidate deployment failed; carries the attempts
     ├── BudgetExceeded               a spending budget cannot afford the request; not sent
     └── ProviderError                a call to one deployment failed
          ├── RateLimited             429 for requests/tokens per minute      retryable
          │    └── WaitTooLong        the scheduler would wait past its bound; nothing was sent
          ├── QuotaExhausted          billing quota or credit is used up
          ├── Overloaded              the provider is overloaded (529, 503)    retryable
          ├── ContextWindowExceeded   the prompt does not fit the model
          ├── ContentFiltered         the provider refused on content policy
          ├── AuthenticationFailed    the API key is missing, invalid or not allowed
          ├── BadRequest              the request is invalid (the caller's fault)
          ├── NotFound                unknown model or endpoint
          ├── Timeout                 connect, first-byte or idle-stream timeout  retryable
          ├── ProviderUnavailable     5xx, refused or dropped connection       retryable
          ├── StreamInterrupted       a stream failed after it had started     retryable
          └── MalformedResponse       the provider's answer could not be read  retryable

Every :class:`ProviderError` carries ``provider``, ``deployment``, ``status_code``, the
provider's own ``message``, whether retrying the same deployment can help (``retryable``),
``retry_after`` seconds when the provider said so, and the ``rate_limits`` its headers
reported. ``message`` is the provider's own words, whole; who answered and the HTTP status
are rendered by ``str()`` from the other fields, so the message never repeats them.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from llmrelay.types import Attempt, RateLimitInfo

ATTEMPT_MESSAGE_LIMIT = 400
"""Characters of each attempt's message that :class:`AllModelsExhausted` shows."""


def shorten(text: str, limit: int) -> str:
    """``text`` with its whitespace collapsed, cut at a word boundary to ``limit`` characters.

    A cut text ends in "…". Only a single word longer than half the limit (a token, a
    base64 blob) is cut inside itself, since there is no boundary to cut at.
    """
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


class LLMRelayError(Exception):
    """Base of every error llmrelay raises."""


class ConfigError(LLMRelayError):
    """A configuration file or value is invalid; the message names the file and key."""


class UnknownProvider(LLMRelayError, KeyError):
    """No provider adapter is registered under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown provider"


class UnknownModelGroup(LLMRelayError, KeyError):
    """No model group is configured under the requested name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model group"


class AllModelsExhausted(LLMRelayError):
    """Every candidate deployment of a request failed; ``attempts`` says how, in order."""

    def __init__(self, message: str, attempts: list[Attempt]) -> None:
        super().__init__(message)
        self.attempts = attempts

    def __str__(self) -> str:
        tried = "; ".join(_attempt_text(a) for a in self.attempts if a.error is not None)
        return f"{self.args[0]} — {tried}" if tried else str(self.args[0])


class BudgetExceeded(LLMRelayError):
    """A spending budget cannot afford the request: nothing was sent.

    Names the budget (``budget``), what it has spent and holds for calls in flight
    (``spent_usd``), its limit (``limit_usd``) and when its period ends (``resets_at``,
    an aware datetime in the budget's time zone).
    """

    def __init__(
        self,
        budget: str,
        *,
        spent_micros: int,
        limit_micros: int,
        needed_micros: int,
        resets_at: datetime,
        attempts: list[Attempt] | None = None,
    ) -> None:
        self.budget = budget
        self.spent_micros = spent_micros
        self.limit_micros = limit_micros
        self.needed_micros = needed_micros
        self.resets_at = resets_at
        self.attempts = attempts or []
        super().__init__(
            f"budget {budget!r} cannot afford this request: ${spent_micros / 1e6:.6f} spent "
            f"or held of ${limit_micros / 1e6:.6f}, the request may cost up to "
            f"${needed_micros / 1e6:.6f}; it resets at {resets_at.isoformat()}"
        )

    @property
    def spent_usd(self) -> float:
        return self.spent_micros / 1_000_000

    @property
    def limit_usd(self) -> float:
        return self.limit_micros / 1_000_000


def _attempt_text(attempt: Attempt) -> str:
    """``deployment: Error (HTTP 429: message)``, the message whole up to a word boundary."""
    status = f"HTTP {attempt.status_code}" if attempt.status_code is not None else ""
    message = shorten(attempt.message, ATTEMPT_MESSAGE_LIMIT)
    detail = ": ".join(part for part in (status, message) if part)
    return f"{attempt.deployment}: {attempt.error}" + (f" ({detail})" if detail else "")


class ProviderError(LLMRelayError):
    """A call to one deployment failed.

    ``retryable`` says whether the same request to the same deployment may succeed later;
    it is a class default that an instance may override.
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        deployment: str = "",
        status_code: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        rate_limits: RateLimitInfo | None = None,
    ) -> None:
        super().__init__(message)
        self.rate_limits = rate_limits
        self.message = message
        self.provider = provider
        self.deployment = deployment
        self.status_code = status_code
        self.retry_after = retry_after
        if retryable is not None:
            self.retryable = retryable  # type: ignore[misc]  # instance override of the class default

    def __str__(self) -> str:
        # A deployment id of the default form ``provider/model`` (``vllm/llama`` for an
        # aliased adapter too) already names the provider; only a bare name gets it added.
        where = self.deployment or self.provider
        if self.provider and self.deployment and "/" not in self.deployment:
            where = f"{self.provider}/{self.deployment}"
        status = f" HTTP {self.status_code}" if self.status_code is not None else ""
        prefix = f"[{where}{status}] " if where or status else ""
        return f"{prefix}{self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"deployment={self.deployment!r}, status_code={self.status_code!r})"
        )


class RateLimited(ProviderError):
    """The deployment's request or token rate limit was hit; wait ``retry_after`` seconds."""

    retryable = True


class WaitTooLong(RateLimited):
    """The deployment's limits would make this request wait longer than allowed.

    Raised by the scheduler *before* anything is sent (no upstream 429 happened), so the
    router can fall back at once instead of waiting — the 90-second rule. ``projected_wait``
    is ``inf`` when the request can never fit (it needs more tokens than the per-minute
    limit).
    """

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        projected_wait: float,
        max_wait: float,
        deployment: str = "",
    ) -> None:
        super().__init__(message, deployment=deployment, retry_after=projected_wait)
        self.projected_wait = projected_wait
        self.max_wait = max_wait


class QuotaExhausted(ProviderError):
    """The account's quota or credit is used up; waiting a minute will not help."""


class Overloaded(ProviderError):
    """The provider is overloaded (Anthropic 529, 503 'overloaded'); try later or elsewhere."""

    retryable = True


class ContextWindowExceeded(ProviderError):
    """The prompt (plus requested output) does not fit the model's context window."""

    def __init__(
        self,
        message: str,
        *,
        required_tokens: int | None = None,
        max_tokens: int | None = None,
        provider: str = "",
        deployment: str = "",
        status_code: int | None = None,
    ) -> None:
        super().__init__(message, provider=provider, deployment=deployment, status_code=status_code)
        self.required_tokens = required_tokens
        self.max_tokens = max_tokens


class ContentFiltered(ProviderError):
    """The provider refused the prompt or the answer on content policy."""


class AuthenticationFailed(ProviderError):
    """The API key is missing, invalid or lacks permission."""


class BadRequest(ProviderError):
    """The request is invalid; sending it elsewhere will not help."""


class NotFound(ProviderError):
    """The model or endpoint does not exist at this deployment."""


class Timeout(ProviderError):
    """Connecting, waiting for the first byte, or waiting between stream chunks took too long."""

    retryable = True


class ProviderUnavailable(ProviderError):
    """A 5xx answer, or the connection was refused or dropped."""

    retryable = True


class StreamInterrupted(ProviderError):
    """A stream failed after it had started: an error event, a cut or a dropped connection."""

    retryable = True


class MalformedResponse(ProviderError):
    """The provider's answer could not be decoded."""

    retryable = True
