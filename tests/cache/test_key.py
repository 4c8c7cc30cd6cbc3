"""The exact key: one key per question, whatever the delivery; another for any other question."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from llmrelay.cache.key import UNKEYED, deterministic, exact_key, semantic_parts
from llmrelay.types import (
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolSpec,
)

BASE = ChatRequest(
    messages=[Message(role="user", content="What is the capital of France?")],
    temperature=0.0,
)

# One changed value per field that reaches a provider. A field added to ChatRequest must be
# listed here or in UNKEYED: that is the decision whether it changes the answer.
CHANGED: dict[str, Any] = {
    "messages": [Message(role="user", content="What is the capital of Spain?")],
    "system": "Answer in French.",
    "max_tokens": 5,
    "temperature": 0.7,
    "top_p": 0.5,
    "stop": ["\n"],
    "tools": [ToolSpec(name="lookup")],
    "tool_choice": "required",
    "response_format": ResponseFormat(type="json_object"),
}
UNCHANGED: dict[str, Any] = {
    "model": "gpt-4o",
    "stream": True,
    "user": "alice",
    "metadata": {"trace": "1"},
    "key": "vk-1",
    "tags": ["team-a"],
}


def test_every_request_field_is_either_keyed_or_declared_unkeyed() -> None:
    """A new ChatRequest field cannot slip past the key: each is tested here or in UNKEYED."""
    fields = set(ChatRequest.__struct_fields__)
    assert set(CHANGED) | UNKEYED == fields
    assert set(CHANGED).isdisjoint(UNKEYED)
    assert set(UNCHANGED) == UNKEYED


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_field_that_reaches_the_provider_changes_the_key(field: str) -> None:
    """Another value of any field sent to the provider is another question."""
    other = msgspec.structs.replace(BASE, **{field: CHANGED[field]})
    assert exact_key(other, "default") != exact_key(BASE, "default")


@pytest.mark.parametrize("field", sorted(UNCHANGED))
def test_delivery_and_labels_do_not_change_the_key(field: str) -> None:
    """Streaming, the user, metadata, the caller's key and tags share one entry."""
    other = msgspec.structs.replace(BASE, **{field: UNCHANGED[field]})
    assert exact_key(other, "default") == exact_key(BASE, "default")


@pytest.mark.parametrize(
    "changed",
    [
        {"role": "assistant"},
        {"content": [TextPart("What is the capital of France?"), ImagePart("https://x/y.png")]},
        {"tool_calls": [ToolCall(id="c1", name="lookup")]},
        {"tool_call_id": "c1"},
        {"name": "bob"},
    ],
)
def test_every_message_field_changes_the_key(changed: dict[str, Any]) -> None:
    """Role, content, tool calls, the answered call and the author's name are all keyed."""
    message = msgspec.structs.replace(BASE.messages[0], **changed)
    other = msgspec.structs.replace(BASE, messages=[message])
    assert exact_key(other, "default") != exact_key(BASE, "default")


def test_a_message_field_added_later_is_keyed_without_being_listed() -> None:
    """The key takes every Message field, so the test above covers all of them."""
    assert set(Message.__struct_fields__) == {
        "role",
        "content",
        "tool_calls",
        "tool_call_id",
        "name",
    }


def test_an_integer_temperature_is_the_same_question_as_its_float() -> None:
    """temperature=0 and temperature=0.0 (top_p=1 and 1.0) ask for the same answer."""
    ints = msgspec.structs.replace(BASE, temperature=0, top_p=1)  # ints as callers write them
    floats = msgspec.structs.replace(BASE, temperature=0.0, top_p=1.0)
    assert exact_key(ints, "default") == exact_key(floats, "default")


def test_texts_are_compared_in_nfc_with_their_ends_stripped() -> None:
    """A decomposed accent or surrounding whitespace is the same question."""
    composed = ChatRequest(messages=[Message(role="user", content="Café?")])
    decomposed = ChatRequest(messages=[Message(role="user", content="  Cafe\u0301?\n")])
    assert exact_key(composed, "g") == exact_key(decomposed, "g")


def test_group_names_are_case_insensitive_like_the_router() -> None:
    """The router finds groups case-insensitively; so does the key. Another group differs."""
    assert exact_key(BASE, "Default") == exact_key(BASE, "default")
    assert exact_key(BASE, "cheap") != exact_key(BASE, "default")


def test_only_temperature_zero_is_deterministic() -> None:
    """Temperature 0 asks for one answer; unset or above 0 does not."""
    assert deterministic(BASE)
    assert not deterministic(msgspec.structs.replace(BASE, temperature=None))
    assert not deterministic(msgspec.structs.replace(BASE, temperature=0.2))


def test_the_semantic_context_leaves_out_the_last_question() -> None:
    """Two last questions after the same history share a context key; the text is NFC."""
    history = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    first = ChatRequest(messages=[*history, Message(role="user", content=" Cafe\u0301? ")])
    second = ChatRequest(messages=[*history, Message(role="user", content="Tea?")])
    parts = semantic_parts(first, "g")
    assert parts is not None and parts[1] == "Café?"
    other = semantic_parts(second, "g")
    assert other is not None and other[0] == parts[0]


def test_no_semantic_parts_without_a_last_user_text() -> None:
    """An assistant last, an image in the question or an empty one: nothing to compare."""
    assert (
        semantic_parts(ChatRequest(messages=[Message(role="assistant", content="x")]), "g") is None
    )
    image = Message(role="user", content=[ImagePart("https://x/y.png")])
    assert semantic_parts(ChatRequest(messages=[image]), "g") is None
    assert semantic_parts(ChatRequest(messages=[Message(role="user", content=" ")]), "g") is None
