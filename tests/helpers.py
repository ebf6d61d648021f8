"""Small builders the tests share."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.conftest import EXAMPLE
from worker import comparisons, db, subscribers


def example_payload() -> dict[str, Any]:
    return copy.deepcopy(json.loads(EXAMPLE.read_text()))


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.write_text(json.dumps(payload, ensure_ascii=False))
    return path


def store_payload(engine: Engine, payload: dict[str, Any]) -> None:
    doc = comparisons.parse_document(json.dumps(payload).encode(), source="test.json")
    with db.session_scope(engine) as session:
        comparisons.store(session, doc)


def add_subscribers(engine: Engine, *emails: str) -> None:
    with db.session_scope(engine) as session:
        for email in emails:
            subscribers.add(session, email, name=None, source="test")
