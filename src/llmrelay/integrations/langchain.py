"""LangChain chat model that routes through :class:`~llmrelay.SmartLLM` (extra ``langchain``).

.. code-block:: python

    from llmrelay.integrations.langchain import ChatLLMRelay
    chat = ChatLLMRelay(llm=SmartLLM.from_config("llmrelay.yaml"), model="default")
    chat.invoke("Hello")

``model`` names the model group. Without ``llm``, the client is built on first use from
``config`` (a YAML path) or, failing that, from the keys in the environment
(:meth:`SmartLLM.for_tier`). Invoke, stream, async, tool calling and usage metadata work
as in every LangChain chat model.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

from llmrelay.client import SmartLLM
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    StreamEnd,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)


class ChatLLMRelay(BaseChatModel):
    """A LangChain chat model backed by llmrelay's router."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    llm: SmartLLM | None = Field(default=None, exclude=True)
    config: str | None = None
    model: str = Field(default="default", alias="model_name")
    temperature: float | None = None
    max_tokens: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    timeout: float | None = None
    max_retries: int | None = None
    streaming: bool = False
    _client: SmartLLM | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "llmrelay"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llmrelay"
        params["ls_model_name"] = kwargs.get("model") or self.model
        if self.max_tokens is not None:
            params["ls_max_tokens"] = self.max_tokens
        if self.temperature is not None:
            params["ls_temperature"] = self.temperature
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @property
    def client(self) -> SmartLLM:
        if self.llm is not None:
            return self.llm
        if self._client is None:
            self._client = SmartLLM.from_config(self.config) if self.config else SmartLLM.for_tier()
        return self._client

    # -- tools ------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools``; ``tool_choice``: ``auto``, ``none``, ``any``/``required`` or a name."""
        specs = []
        for tool in tools:
            function = convert_to_openai_tool(tool)["function"]
            specs.append(
                ToolSpec(
                    name=function["name"],
                    description=function.get("description", ""),
                    parameters=function.get("parameters", {"type": "object", "properties": {}}),
                )
            )
        choice = "required" if tool_choice in ("any", True) else tool_choice
        return super().bind(tools=specs, tool_choice=choice, **kwargs)

    # -- calls ------------------------------------------------------------------------------

    def _request(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> ChatRequest:
        system = [m for m in messages if isinstance(m, SystemMessage)]
        request = ChatRequest(
            messages=[_to_message(m) for m in messages if not isinstance(m, SystemMessage)],
            system="\n\n".join(_text(m.content) for m in system) or None,
            max_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            stop=stop or self.stop,
            tools=kwargs.get("tools") or None,
            tool_choice=kwargs.get("tool_choice"),
        )
        return request

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, **kwargs)
        return _result(self.client.invoke(request, model=kwargs.get("model") or self.model))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = self._request(messages, stop, **kwargs)
        group = kwargs.get("model") or self.model
        # On the client's own loop: one model instance serves sync and async callers alike.
        client = self.client
        return _result(
            await asyncio.wrap_future(client.submit(client.ainvoke(request, model=group)))
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        request = self._request(messages, stop, **kwargs)
        model = ""
        for event in self.client.stream(request, model=kwargs.get("model") or self.model):
            model = event.model if isinstance(event, StreamStart) else model
            chunk = _chunk(event, model)
            if chunk is not None:
                if run_manager and isinstance(event, TextDelta):
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        request = self._request(messages, stop, **kwargs)
        client = self.client
        events = client.astream(request, model=kwargs.get("model") or self.model)
        model = ""
        while True:
            try:
                event = await asyncio.wrap_future(client.submit(_next(events)))
            except StopAsyncIteration:
                return
            model = event.model if isinstance(event, StreamStart) else model
            chunk = _chunk(event, model)
            if chunk is not None:
                if run_manager and isinstance(event, TextDelta):
                    await run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk


async def _next(events: AsyncIterator[Any]) -> Any:
    return await events.__anext__()


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or part.get("type") == "text"
    )


def _parts(content: str | list[Any]) -> str | list[TextPart | ImagePart]:
    if isinstance(content, str):
        return content
    parts: list[TextPart | ImagePart] = []
    for part in content:
        if isinstance(part, str):
            parts.append(TextPart(part))
        elif part.get("type") == "text":
            parts.append(TextPart(str(part.get("text", ""))))
        elif part.get("type") == "image_url":
            url = part["image_url"]
            parts.append(ImagePart(url=url["url"] if isinstance(url, dict) else str(url)))
        elif part.get("type") == "image" and part.get("source_type") == "url":
            parts.append(ImagePart(url=str(part["url"])))
        elif part.get("type") == "image" and part.get("source_type") == "base64":
            parts.append(
                ImagePart(url=f"data:{part.get('mime_type', 'image/png')};base64,{part['data']}")
            )
    return parts


def _to_message(message: BaseMessage) -> Message:
    if isinstance(message, HumanMessage):
        return Message(role="user", content=_parts(message.content))
    if isinstance(message, AIMessage):
        calls = [
            ToolCall(id=c.get("id") or "", name=c["name"], arguments=json.dumps(c.get("args", {})))
            for c in message.tool_calls
        ]
        return Message(role="assistant", content=_text(message.content), tool_calls=calls or None)
    if isinstance(message, ToolMessage):
        return Message(
            role="tool", content=_text(message.content), tool_call_id=message.tool_call_id
        )
    return Message(role="user", content=_text(message.content))


def _usage(usage: Usage) -> UsageMetadata:
    return UsageMetadata(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.input_tokens + usage.output_tokens,
    )


def _result(response: ChatResponse) -> ChatResult:
    calls = [
        {"id": c.id, "name": c.name, "args": json.loads(c.arguments or "{}"), "type": "tool_call"}
        for c in response.tool_calls
    ]
    message = AIMessage(
        content=response.content,
        tool_calls=calls,
        usage_metadata=_usage(response.usage),
        response_metadata={
            "model_name": response.model,
            "finish_reason": response.finish_reason,
            "deployment": response.deployment,
            "provider": response.provider,
        },
        id=response.id or None,
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _chunk(event: Any, model: str) -> ChatGenerationChunk | None:
    """One LangChain chunk per event; the last carries usage and the model name, once."""
    if isinstance(event, TextDelta):
        return ChatGenerationChunk(message=AIMessageChunk(content=event.text))
    if isinstance(event, ToolCallDelta):
        piece = {"index": event.index, "id": event.id, "name": event.name, "args": event.arguments,
                 "type": "tool_call_chunk"}  # fmt: skip
        return ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))  # type: ignore[list-item]  # a ToolCallChunk dict
    if isinstance(event, StreamEnd):
        usage = _usage(event.usage) if event.usage is not None else None
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=usage,
                response_metadata={"finish_reason": event.finish_reason, "model_name": model},
                chunk_position="last",
            )
        )
    return None


__all__ = ["ChatLLMRelay"]
