"""Per-recipient values in a pre-rendered email, by a marker that comparison text cannot forge.

An edition is rendered once. Where a recipient-specific value belongs (their unsubscribe link,
view-in-browser link, open pixel, tracked links) the render writes a marker holding a random key
made for that render. Comparison text is written before the key exists, so it can never contain
a marker, and substitution cannot be steered by what an author types.

Three kinds of marker:
- a value (`unsubscribe_url`, `browser_url`, `open_url`) filled from a mapping per recipient;
- a link (`link.<target in base64>`), which becomes a tracked link per recipient and the plain
  target in the public (archive) copy;
- `personal` … `end_personal` around what only a recipient's copy shows (the unsubscribe line,
  the pixel): empty in a recipient's copy, cut with what lies between them in the public copy.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

VALUES = ("unsubscribe_url", "browser_url", "open_url")
SECTION_START, SECTION_END = "personal", "end_personal"
LINK_PREFIX = "link."

Tracker = Callable[[str], str]  # a link's target → the URL a recipient's copy points at


def new_key() -> str:
    return secrets.token_hex(8)


def marker(key: str, name: str) -> str:
    return f"%%vm-{key}-{name}%%"


def link_marker(key: str, url: str) -> str:
    encoded = base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode("ascii")
    return marker(key, LINK_PREFIX + encoded)


def _link_target(name: str) -> str:
    encoded = name.removeprefix(LINK_PREFIX)
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


@dataclass(frozen=True)
class Template:
    """A rendered body split at its markers once, then filled per recipient by a join."""

    parts: tuple[str, ...]  # literal, name, literal, name, …, literal
    escape_html: bool
    targets: Mapping[str, str] = field(default_factory=dict)  # link marker name → target URL

    @classmethod
    def compile(cls, body: str, key: str, *, escape_html: bool) -> Template:
        pattern = re.compile(r"%%vm-" + re.escape(key) + r"-([a-z_]+(?:\.[A-Za-z0-9_-]*)?)%%")
        parts = tuple(pattern.split(body))
        names = set(parts[1::2])
        targets = {name: _link_target(name) for name in names if name.startswith(LINK_PREFIX)}
        unknown = names - set(VALUES) - {SECTION_START, SECTION_END} - set(targets)
        if unknown:
            raise ValueError(f"template uses unknown placeholders {sorted(unknown)}")
        return cls(parts=parts, escape_html=escape_html, targets=targets)

    @property
    def links(self) -> list[str]:
        """The distinct link targets, in the order they first appear."""
        return list(
            dict.fromkeys(self.targets[name] for name in self.parts[1::2] if name in self.targets)
        )

    def value(self, name: str, values: Mapping[str, str], track: Tracker | None = None) -> str:
        """The text that replaces placeholder `name`, escaped for HTML where the body is HTML.

        Links are tracked by `track`, or left as their plain target when it is None.
        """
        if name in (SECTION_START, SECTION_END):
            return ""
        target = self.targets.get(name)
        if target is not None:
            text = track(target) if track is not None else target
        else:
            text = values[name]
        return html.escape(text) if self.escape_html else text

    def fill(self, values: Mapping[str, str], track: Tracker | None = None) -> str:
        out = list(self.parts)
        for index in range(1, len(out), 2):
            out[index] = self.value(out[index], values, track)
        return "".join(out)

    def public(self) -> str:
        """The copy anyone may see (the archive): personal sections cut, links untracked."""
        out: list[str] = []
        inside = False
        for index, part in enumerate(self.parts):
            if index % 2 == 0:
                if not inside:
                    out.append(part)
            elif part == SECTION_START:
                inside = True
            elif part == SECTION_END:
                inside = False
            elif not inside and part in self.targets:
                out.append(self.value(part, {}))
            # A personal value outside any section (an edition rendered before sections
            # existed) is dropped: the public copy never carries anyone's link.
        return "".join(out)
