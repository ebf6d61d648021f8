"""Comparison documents: validation per SCHEMA.md, import, and the week's-newest pick."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.conftest import SHARED_COMPARISONS
from tests.helpers import example_payload, store_payload
from worker import comparisons, db
from worker.comparisons import ImportOutcome, parse_document
from worker.errors import InputError
from worker.periods import iso_week

Mutation = Callable[[dict[str, Any]], object]

INVALID: dict[str, tuple[Mutation, str]] = {
    "missing field": (lambda p: p.pop("title"), "title"),
    "three tools": (lambda p: p["tools"].append(dict(p["tools"][0], key="c")), "tools"),
    "same tool keys": (lambda p: p["tools"][1].update(key="a"), "tools"),
    "140 percent": (lambda p: p["tools"][1].update(panel_ship_pct=140), "tools[1].panel_ship_pct"),
    "negative community": (
        lambda p: p["tools"][0].update(community_pct=-1),
        "tools[0].community_pct",
    ),
    "unparseable date": (lambda p: p.update(published_at="20/11/2026"), "published_at"),
    "naive date": (lambda p: p.update(published_at="2026-11-20T14:00:00"), "published_at"),
    "review for unknown tool": (lambda p: p["reviews"][5].update(tool="z"), "reviews[5].tool"),
    "non-http url": (lambda p: p.update(url="javascript:alert(1)"), "url"),
    "bad verdict": (lambda p: p["reviews"][0].update(verdict="maybe"), "reviews[0].verdict"),
    "number as name": (lambda p: p["tools"][0].update(name=7), "tools[0].name"),
    "bool as percent": (
        lambda p: p["tools"][0].update(panel_ship_pct=True),
        "tools[0].panel_ship_pct",
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_document_names_file_and_field(case: str) -> None:
    mutate, field = INVALID[case]
    payload = example_payload()
    mutate(payload)
    with pytest.raises(InputError) as raised:
        parse_document(json.dumps(payload).encode(), source="bad.json")
    message = str(raised.value)
    assert message.startswith(f"bad.json: {field}"), message
    assert "\n" not in message


def test_truncated_json_names_file_and_position() -> None:
    raw = json.dumps(example_payload()).encode()[:400]
    with pytest.raises(InputError, match=r"^cut\.json: not valid JSON at line 1 column \d+"):
        parse_document(raw, source="cut.json")


def test_all_shared_samples_are_valid() -> None:
    files = sorted(SHARED_COMPARISONS.glob("*.json"))
    assert len(files) == 5
    for file in files:
        doc = parse_document(file.read_bytes(), source=file.name)
        assert len(doc.tools) == 2
        assert doc.warnings() == []


def test_panel_percent_is_derived_from_reviews_when_absent() -> None:
    payload = example_payload()
    for tool in payload["tools"]:
        tool.pop("panel_ship_pct")
    doc = parse_document(json.dumps(payload).encode(), source="x.json")
    assert doc.panel_ship_pct("a") == 100
    assert doc.panel_ship_pct("b") == 75


def test_panel_percent_is_unknown_for_a_tool_without_reviews() -> None:
    payload = example_payload()
    payload["tools"][1].pop("panel_ship_pct")
    payload["reviews"] = [r for r in payload["reviews"] if r["tool"] == "a"]
    doc = parse_document(json.dumps(payload).encode(), source="x.json")
    assert doc.panel_ship_pct("b") is None


def test_a_panel_percent_that_disagrees_with_the_reviews_is_a_warning() -> None:
    payload = example_payload()
    payload["tools"][1]["panel_ship_pct"] = 40
    doc = parse_document(json.dumps(payload).encode(), source="x.json")
    assert doc.panel_ship_pct("b") == 40
    assert any("tools[1].panel_ship_pct" in warning for warning in doc.warnings())


def test_reimport_is_unchanged_then_updated_when_content_changes(engine: Engine) -> None:
    payload = example_payload()
    doc = parse_document(json.dumps(payload).encode(), source="x.json")
    with db.session_scope(engine) as session:
        assert comparisons.store(session, doc) == ImportOutcome.CREATED
    with db.session_scope(engine) as session:
        assert comparisons.store(session, doc) == ImportOutcome.UNCHANGED
    payload["title"] = "A new title"
    changed = parse_document(json.dumps(payload).encode(), source="x.json")
    with db.session_scope(engine) as session:
        assert comparisons.store(session, changed) == ImportOutcome.UPDATED
    with db.session_scope(engine) as session:
        rows = comparisons.list_all(session)
    assert [(r.slug, r.title) for r in rows] == [(payload["slug"], "A new title")]


def _import_shared(engine: Engine) -> None:
    for file in SHARED_COMPARISONS.glob("*.json"):
        with db.session_scope(engine) as session:
            comparisons.store(session, parse_document(file.read_bytes(), source=file.name))


@pytest.mark.parametrize(
    ("week", "expected"),
    [
        ("2026-W47", "claude-4-api-tool-use-streaming-prompt-caching-vs-code-llama-4"),
        ("2026-W46", "driftbase-vector-vs-pelican-index"),
        ("2026-W49", None),
    ],
)
def test_pick_gives_the_newest_comparison_of_the_week(
    engine: Engine, week: str, expected: str | None
) -> None:
    _import_shared(engine)
    with db.session_scope(engine) as session:
        row = comparisons.newest_in(session, iso_week(week, "UTC"))
    assert (row.slug if row else None) == expected


def test_the_week_is_counted_in_the_given_time_zone(engine: Engine) -> None:
    payload = example_payload()
    payload["published_at"] = "2026-11-22T23:30:00Z"  # Sunday in UTC, Monday 00:30 in Berlin
    store_payload(engine, payload)
    with db.session_scope(engine) as session:
        in_utc = comparisons.newest_in(session, iso_week("2026-W47", "UTC"))
        in_berlin_w47 = comparisons.newest_in(session, iso_week("2026-W47", "Europe/Berlin"))
        in_berlin_w48 = comparisons.newest_in(session, iso_week("2026-W48", "Europe/Berlin"))
    assert in_utc is not None and in_berlin_w47 is None and in_berlin_w48 is not None


@pytest.mark.parametrize("week", ["2026-47", "W47", "2026-W54", "2026-W00", ""])
def test_a_malformed_or_impossible_week_is_an_input_error(week: str) -> None:
    with pytest.raises(InputError, match="week"):
        iso_week(week, "UTC")


def test_an_unknown_time_zone_is_an_input_error() -> None:
    with pytest.raises(InputError, match="Mars/Olympus"):
        iso_week("2026-W47", "Mars/Olympus")


@pytest.fixture
def served_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "site"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_documents_are_read_from_files_folders_and_urls(
    served_folder: tuple[str, Path], tmp_path: Path
) -> None:
    base, folder = served_folder
    (folder / "one.json").write_text(json.dumps(example_payload()))
    local = tmp_path / "local"
    local.mkdir()
    (local / "a.json").write_text("{}")
    (local / "b.json").write_text("{}")
    (local / "notes.txt").write_text("ignored")
    sources = list(
        comparisons.read_sources(
            [f"{base}/one.json", f"{base}/missing.json", str(local), "nowhere.json"]
        )
    )
    assert sources[0].raw is not None and parse_document(sources[0].raw, source=sources[0].name)
    assert sources[1].raw is None and "HTTP 404" in (sources[1].problem or "")
    assert [Path(s.name).name for s in sources[2:4]] == ["a.json", "b.json"]
    assert sources[4].problem == "nowhere.json: no such file or folder"
