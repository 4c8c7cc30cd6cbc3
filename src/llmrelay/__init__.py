"""llmrelay: LLM calls that do not fail."""

from llmrelay import errors
from llmrelay.builder import LLMBuilder
from llmrelay.client import SmartLLM
from llmrelay.types import ChatRequest, ChatResponse, Message, RoutedResponse, Usage

__version__ = "0.1.0"
__all__ = [
    "ChatRequest",
    "ChatResponse",
    "LLMBuilder",
    "Message",
    "RoutedResponse",
    "SmartLLM",
    "Usage",
    "__version__",
    "errors",
]
