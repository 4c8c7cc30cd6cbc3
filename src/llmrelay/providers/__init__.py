"""Provider adapters behind one seam; see :mod:`llmrelay.providers.base`."""

from llmrelay.providers.anthropic import AnthropicProvider
from llmrelay.providers.base import Deployment, HttpProvider, Provider
from llmrelay.providers.gemini import GeminiProvider
from llmrelay.providers.http import HttpClient, Timeouts, WireRequest
from llmrelay.providers.ollama import OllamaProvider
from llmrelay.providers.openai import OpenAICompatibleProvider, OpenAIProvider
from llmrelay.providers.registry import ProviderRegistry, default_registry

__all__ = [
    "AnthropicProvider",
    "Deployment",
    "GeminiProvider",
    "HttpClient",
    "HttpProvider",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderRegistry",
    "Timeouts",
    "WireRequest",
    "default_registry",
]
