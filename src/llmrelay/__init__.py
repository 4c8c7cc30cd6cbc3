"""llmrelay: LLM calls that do not fail."""

from llmrelay import errors
from llmrelay.types import ChatRequest, ChatResponse, Message, Usage

__version__ = "0.1.0"
__all__ = ["ChatRequest", "ChatResponse", "Message", "Usage", "__version__", "errors"]
