"""llmrelay: LLM calls that do not fail."""

from llmrelay import errors
from llmrelay.builder import LLMBuilder
from llmrelay.client import SmartLLM
from llmrelay.types import (
    Attempt,
    ChatRequest,
    ChatResponse,
    Message,
    ResponseFormat,
    RoutedResponse,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

__version__ = "0.1.0"
__all__ = [
    "Attempt",
    "ChatRequest",
    "ChatResponse",
    "LLMBuilder",
    "Message",
    "ResponseFormat",
    "RoutedResponse",
    "SmartLLM",
    "StreamAccumulator",
    "StreamEnd",
    "StreamEvent",
    "StreamStart",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    "__version__",
    "errors",
]
