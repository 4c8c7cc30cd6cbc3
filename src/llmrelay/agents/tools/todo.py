"""The todo tools: add, list and complete items kept in the runs database."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from llmrelay.agents.errors import ToolFailed
from llmrelay.agents.tools.registry import Tool

_ITEM = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "text": {"type": "string"},
                   "done": {"type": "boolean"}},
    "required": ["id", "text", "done"],
}  # fmt: skip


class TodoStore(Protocol):
    def add_todo(self, text: str) -> dict[str, Any]: ...
    def list_todos(self, *, include_done: bool = False) -> list[dict[str, Any]]: ...
    def complete_todo(self, todo_id: int) -> dict[str, Any] | None: ...


def todo_tools(store: TodoStore) -> list[Tool]:
    """``todo_add`` (not idempotent: twice adds two items), ``todo_list``, ``todo_complete``."""

    async def add(arguments: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(store.add_todo, arguments["text"])

    async def listing(arguments: dict[str, Any]) -> dict[str, Any]:
        found = await asyncio.to_thread(
            store.list_todos, include_done=bool(arguments.get("include_done", False))
        )
        return {"items": found, "count": len(found)}

    async def complete(arguments: dict[str, Any]) -> dict[str, Any]:
        item = await asyncio.to_thread(store.complete_todo, arguments["id"])
        if item is None:
            raise ToolFailed(f"todo_complete: no todo with id {arguments['id']}")
        return item

    return [
        Tool(
            name="todo_add", version="1.0.0", description="Add an item to the todo list.",
            input_schema={"type": "object", "additionalProperties": False, "required": ["text"],
                          "properties": {"text": {"type": "string", "minLength": 1,
                                                  "maxLength": 1000}}},
            output_schema=_ITEM, run=add, timeout_s=5.0, idempotent=False,
        ),
        Tool(
            name="todo_list", version="1.0.0", description="List the todo items not yet done.",
            input_schema={"type": "object", "additionalProperties": False,
                          "properties": {"include_done": {"type": "boolean"}}},
            output_schema={"type": "object", "required": ["items", "count"],
                           "properties": {"items": {"type": "array", "items": _ITEM},
                                          "count": {"type": "integer"}}},
            run=listing, timeout_s=5.0, idempotent=True, retries=2,
        ),
        Tool(
            name="todo_complete", version="1.0.0", description="Mark a todo item as done.",
            input_schema={"type": "object", "additionalProperties": False, "required": ["id"],
                          "properties": {"id": {"type": "integer", "minimum": 1}}},
            output_schema=_ITEM, run=complete, timeout_s=5.0, idempotent=True, retries=2,
        ),
    ]  # fmt: skip


__all__ = ["TodoStore", "todo_tools"]
