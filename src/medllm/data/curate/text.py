"""The texts of a record that curation reads and rewrites: the user prompt and the reference."""

from __future__ import annotations

from collections.abc import Callable


def prompt_text(record: dict) -> str:
    """The prompt's own text: the non-system messages (the system prompt is ours, one per task)."""
    return "\n\n".join(m["content"] for m in record["messages"] if m["role"] != "system")


def map_text(record: dict, fn: Callable[[str], str]) -> dict:
    """A copy of ``record`` with ``fn`` applied to its user messages and its reference."""
    messages = [m if m["role"] == "system" else {**m, "content": fn(m["content"])} for m in record["messages"]]
    return {**record, "messages": messages, "reference": fn(record["reference"])}


ASCII = bytes(range(128))  # deleted from UTF-8 bytes (``bytes.translate(None, ASCII)``) leaves the non-ASCII ones
