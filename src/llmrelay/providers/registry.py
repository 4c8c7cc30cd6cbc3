"""Provider names to adapter classes: the one place a name becomes an adapter object."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from llmrelay.errors import UnknownProvider
from llmrelay.providers.anthropic import AnthropicProvider
from llmrelay.providers.base import Deployment, Provider
from llmrelay.providers.gemini import GeminiProvider
from llmrelay.providers.http import HttpClient
from llmrelay.providers.ollama import OllamaProvider
from llmrelay.providers.openai import OpenAICompatibleProvider, OpenAIProvider

ProviderFactory = Callable[[Deployment, HttpClient | None], Provider]


class ProviderRegistry:
    """Maps a provider name (``openai``, ``anthropic``…) to a factory of adapters."""

    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {}

    def register(self, name: str, factory: ProviderFactory) -> None:
        self._factories[name.lower()] = factory

    def create(self, deployment: Deployment, client: HttpClient | None = None) -> Provider:
        """The adapter for ``deployment``; several adapters may share one ``client``."""
        factory = self._factories.get(deployment.provider.lower())
        if factory is None:
            known = ", ".join(sorted(self._factories))
            raise UnknownProvider(
                f"unknown provider {deployment.provider!r} for deployment {deployment.id}; "
                f"known providers: {known}"
            )
        return factory(deployment, client)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._factories))


def default_registry() -> ProviderRegistry:
    """A new registry holding the built-in adapters; callers may register more."""
    registry = ProviderRegistry()
    for cls in (
        OpenAIProvider,
        OpenAICompatibleProvider,
        AnthropicProvider,
        GeminiProvider,
        OllamaProvider,
    ):
        registry.register(cls.name, cls)
    for alias in ("vllm", "lmstudio", "llamacpp"):
        registry.register(alias, OpenAICompatibleProvider)
    return registry
