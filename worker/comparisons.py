"""Comparison documents: validate (SCHEMA.md), load (file, folder, URL), store, pick the newest."""

from __future__ import annotations

import hashlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlmodel import Session, col, select

from worker.errors import InputError
from worker.models import Comparison, utcnow
from worker.periods import Period

MAX_DOCUMENT_BYTES = 2_000_000
URL_TIMEOUT_S = 20

Pct = Annotated[float, Field(ge=0, le=100)]

# C0 controls other than TAB, LF and CR, DEL, and the two Unicode non-characters U+FFFE/U+FFFF:
# nothing a writer means to publish, and the email compiler cannot carry them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _printable(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"contains the control character U+{ord(found.group()):04X}")
    return value


Text = Annotated[str, AfterValidator(_printable)]


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


class Tool(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    key: Text = Field(min_length=1)
    name: Text = Field(min_length=1)
    category: Text
    tagline: Text
    panel_ship_pct: Pct | None = None
    community_pct: Pct | None = None
    pricing: Text
    summary: Text


class Review(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    tool: Text
    reviewer: Text = Field(min_length=1)
    verdict: Literal["ship", "skip"]
    quote: Text


class ComparisonDoc(BaseModel):
    """One published comparison, validated. Text fields are plain text (never markup)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    slug: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    kind: Text
    title: Text = Field(min_length=1)
    dek: Text
    url: str
    published_at: Text
    tools: list[Tool]
    reviews: list[Review]

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _http_url(value)

    @field_validator("published_at")
    @classmethod
    def _aware_iso(cls, value: str) -> str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be an ISO 8601 date-time, got {value!r}") from None
        if parsed.tzinfo is None:
            raise ValueError(f"must carry a UTC offset (e.g. 2026-11-20T14:00:00Z), got {value!r}")
        return value

    @field_validator("tools")
    @classmethod
    def _two_tools(cls, tools: list[Tool]) -> list[Tool]:
        if len(tools) != 2:
            raise ValueError(f"must hold exactly 2 tools, got {len(tools)}")
        if tools[0].key == tools[1].key:
            raise ValueError(f"tool keys must differ, both are {tools[0].key!r}")
        return tools

    @model_validator(mode="after")
    def _reviews_name_tools(self) -> ComparisonDoc:
        keys = {tool.key for tool in self.tools}
        for index, review in enumerate(self.reviews):
            if review.tool not in keys:
                raise _FieldProblem(
                    f"reviews[{index}].tool",
                    f"names tool {review.tool!r}, but the tools are {sorted(keys)}",
                )
        return self

    @property
    def published(self) -> datetime:
        return datetime.fromisoformat(self.published_at)

    def reviews_of(self, key: str) -> list[Review]:
        return [review for review in self.reviews if review.tool == key]

    def derived_ship_pct(self, key: str) -> int | None:
        """The share of this tool's reviews that say ship, rounded; None with no reviews."""
        reviews = self.reviews_of(key)
        if not reviews:
            return None
        ships = sum(1 for review in reviews if review.verdict == "ship")
        return round(100 * ships / len(reviews))

    def panel_ship_pct(self, key: str) -> int | None:
        tool = next(tool for tool in self.tools if tool.key == key)
        if tool.panel_ship_pct is not None:
            return round(tool.panel_ship_pct)
        return self.derived_ship_pct(key)

    def warnings(self) -> list[str]:
        """Soft problems: the document is usable but something in it disagrees with itself."""
        found = []
        for index, tool in enumerate(self.tools):
            derived = self.derived_ship_pct(tool.key)
            given = tool.panel_ship_pct
            if given is not None and derived is not None and round(given) != derived:
                found.append(
                    f"tools[{index}].panel_ship_pct is {tool.panel_ship_pct:g} but the "
                    f"reviews say {derived}%; the given figure is shown"
                )
        return found


class _FieldProblem(ValueError):
    """Raised from a model validator to name a nested field precisely."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def _describe(error: Any) -> str:
    kind = error["type"]
    loc = _field_path(tuple(error["loc"]))
    if kind == "missing":
        return f"{loc}: required field is missing"
    context = error.get("ctx") or {}
    original = context.get("error")
    if isinstance(original, _FieldProblem):
        return f"{original.field}: {original.problem}"
    if kind in ("greater_than_equal", "less_than_equal"):
        return f"{loc}: must be 0–100, got {error['input']!r}"
    if kind == "value_error":
        return f"{loc}: {original}"
    return f"{loc}: {error['msg'].lower()}, got {error['input']!r}"[:300]


def parse_document(raw: bytes, *, source: str) -> ComparisonDoc:
    """Validate one comparison; any problem is a one-line InputError naming source and field."""
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InputError(f"{source}: file is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise InputError(f"{source}: not UTF-8 text (byte {error.start})") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except json.JSONDecodeError as error:
        raise InputError(
            f"{source}: not valid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: (document): must be a JSON object")
    try:
        return ComparisonDoc.model_validate(data)
    except ValidationError as error:
        raise InputError(f"{source}: {_describe(error.errors()[0])}") from None


def content_hash_of(doc: ComparisonDoc) -> str:
    canonical = json.dumps(doc.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Source:
    """One document to import: where it came from (for messages) and its bytes, or why not."""

    name: str
    raw: bytes | None
    problem: str | None = None


def read_sources(targets: list[str]) -> Iterator[Source]:
    """Expand files, directories (their *.json, sorted) and http(s) URLs into documents."""
    for target in targets:
        if target.startswith(("http://", "https://")):
            yield _fetch(target)
            continue
        path = Path(target)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.json") if p.is_file())
            if not files:
                yield Source(name=target, raw=None, problem=f"{target}: no .json files in folder")
            for file in files:
                yield Source(name=str(file), raw=file.read_bytes())
        elif path.is_file():
            yield Source(name=target, raw=path.read_bytes())
        else:
            yield Source(name=target, raw=None, problem=f"{target}: no such file or folder")


def _fetch(url: str) -> Source:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            raw = response.read(MAX_DOCUMENT_BYTES + 1)
    except urllib.error.HTTPError as error:
        return Source(name=url, raw=None, problem=f"{url}: server answered HTTP {error.code}")
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Source(name=url, raw=None, problem=f"{url}: could not be fetched ({reason})")
    return Source(name=url, raw=raw)


class ImportOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


def store(session: Session, doc: ComparisonDoc) -> ImportOutcome:
    """Insert or update by slug; an edition already rendered keeps its own frozen copy."""
    digest = content_hash_of(doc)
    now = utcnow()
    existing = session.exec(select(Comparison).where(Comparison.slug == doc.slug)).first()
    if existing is not None and existing.content_hash == digest:
        return ImportOutcome.UNCHANGED
    fields: dict[str, Any] = {
        "title": doc.title,
        "dek": doc.dek,
        "url": doc.url,
        "published_at": doc.published,
        "payload": doc.model_dump(mode="json"),
        "content_hash": digest,
        "updated_at": now,
    }
    if existing is None:
        session.add(Comparison(slug=doc.slug, imported_at=now, **fields))
    else:
        existing.sqlmodel_update(fields)
        session.add(existing)
    session.flush()
    return ImportOutcome.CREATED if existing is None else ImportOutcome.UPDATED


def document_of(row: Comparison) -> ComparisonDoc:
    return ComparisonDoc.model_validate(row.payload)


def get_by_slug(session: Session, slug: str) -> Comparison:
    row = session.exec(select(Comparison).where(Comparison.slug == slug)).first()
    if row is None:
        raise InputError(f"comparison {slug!r} is not imported (see `newsletter comparisons list`)")
    return row


def list_all(session: Session) -> list[Comparison]:
    return list(session.exec(select(Comparison).order_by(col(Comparison.published_at).desc())))


def newest_in(session: Session, period: Period) -> Comparison | None:
    """The comparison published last inside the period; ties broken by slug for a stable answer."""
    statement = (
        select(Comparison)
        .where(Comparison.published_at >= period.start_utc)
        .where(Comparison.published_at < period.end_utc)
        .order_by(col(Comparison.published_at).desc(), col(Comparison.slug).desc())
        .limit(1)
    )
    return session.exec(statement).first()
