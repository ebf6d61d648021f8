"""Per-recipient values in a pre-rendered email, by a marker that comparison text cannot forge.

An edition is rendered once. Where a recipient-specific value belongs (their unsubscribe link,
view-in-browser link, later tracking links) the render writes a marker holding a random key made
for that render. Comparison text is written before the key exists, so it can never contain a
marker, and substitution cannot be steered by what an author types.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

NAMES = ("unsubscribe_url", "browser_url")


def new_key() -> str:
    return secrets.token_hex(8)


def marker(key: str, name: str) -> str:
    return f"%%vm-{key}-{name}%%"


@dataclass(frozen=True)
class Template:
    """A rendered body split at its markers once, then filled per recipient by a join."""

    parts: tuple[str, ...]  # literal, name, literal, name, …, literal
    escape_html: bool

    @classmethod
    def compile(cls, body: str, key: str, *, escape_html: bool) -> Template:
        pattern = re.compile(r"%%vm-" + re.escape(key) + r"-([a-z_]+)%%")
        parts = tuple(pattern.split(body))
        unknown = set(parts[1::2]) - set(NAMES)
        if unknown:
            raise ValueError(f"template uses unknown placeholders {sorted(unknown)}")
        return cls(parts=parts, escape_html=escape_html)

    def value(self, name: str, values: Mapping[str, str]) -> str:
        """The text that replaces placeholder `name`, escaped for HTML where the body is HTML."""
        return html.escape(values[name]) if self.escape_html else values[name]

    def fill(self, values: Mapping[str, str]) -> str:
        out = list(self.parts)
        for index in range(1, len(out), 2):
            out[index] = self.value(out[index], values)
        return "".join(out)
