"""Markdown tables for the reports and cards: one layout, one escaping rule."""

from __future__ import annotations


def cell(value) -> str:
    """A value as one table cell: pipes escaped, line breaks flattened."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list]) -> list[str]:
    """The lines of a Markdown table (header, separator, one line per row)."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
