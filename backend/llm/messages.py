"""Turns what callers pass as messages (OpenAI-style dicts, langchain-core messages, or
:class:`ChatMessage`) into the gateway's :class:`ChatMessage` list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from backend.llm.types import ChatMessage, Role

MessageLike = ChatMessage | Mapping[str, Any] | BaseMessage

_LANGCHAIN_ROLES: dict[type[BaseMessage], Role] = {
    SystemMessage: "system",
    HumanMessage: "user",
    AIMessage: "assistant",
}
_ROLE_ALIASES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
}


def content_text(content: Any) -> str:
    """Text of a message's content: a string, or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    raise ValueError(f"unsupported message content of type {type(content).__name__}")


def to_chat_message(message: MessageLike) -> ChatMessage:
    if isinstance(message, ChatMessage):
        return message
    if isinstance(message, BaseMessage):
        for kind, role in _LANGCHAIN_ROLES.items():
            if isinstance(message, kind):
                return ChatMessage(role, content_text(message.content))
        role_name = getattr(message, "role", None) or message.type
    elif isinstance(message, Mapping):
        role_name = message.get("role")
        if "content" not in message:
            raise ValueError("a message needs 'role' and 'content'")
        return ChatMessage(_role(role_name), content_text(message["content"]))
    else:
        raise ValueError(f"unsupported message of type {type(message).__name__}")
    return ChatMessage(_role(role_name), content_text(message.content))


def _role(name: object) -> Role:
    role = _ROLE_ALIASES.get(str(name).lower()) if name is not None else None
    if role is None:
        raise ValueError(f"unsupported message role {name!r}; use system, user or assistant")
    return role


def normalize_messages(messages: Iterable[MessageLike]) -> list[ChatMessage]:
    result = [to_chat_message(message) for message in messages]
    if not result:
        raise ValueError("at least one message is needed")
    return result


__all__ = ["MessageLike", "content_text", "normalize_messages", "to_chat_message"]
