"""The admin area: sign-in, roles, CSRF, previews, retitling, test sends, approval."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlmodel import select

from tests.helpers import add_subscribers, example_payload, require_approval, store_payload
from worker import db, engagement, stats, subscribers, users, weekly
from worker.config import Settings
from worker.models import Delivery, Edition, EditionStatus, EventKind, Role, utcnow
from worker.transports.memory import MemoryTransport
from worker.web import create_app

BASE = "https://verdicts.example.org"
PASSWORD = "correct horse battery"
ROUTES = [
    ("GET", "/admin"),
    ("GET", "/admin/editions"),
    ("GET", "/admin/editions/1"),
    ("GET", "/admin/comparisons/claude-4-api-vs-code-llama-4"),
    ("POST", "/admin/editions/1/approve"),
    ("POST", "/admin/editions/1/retitle"),
    ("POST", "/admin/editions/1/test"),
    ("POST", "/admin/editions/1/pause"),
    ("POST", "/admin/editions/1/resume"),
    ("POST", "/admin/editions/1/cancel"),
    ("POST", "/admin/logout"),
    ("GET", "/admin/subscribers"),
    ("GET", "/admin/subscribers.csv"),
    ("POST", "/admin/subscribers/import"),
]


class Site:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.app = create_app(settings)
        self.app.state.engine = engine
        self.mail = MemoryTransport()
        self.app.state.transport = self.mail
        self.client = TestClient(self.app, base_url=BASE)

    def sign_in(self, email: str) -> None:
        answer = self.client.post(
            "/admin/login", data={"email": email, "password": PASSWORD}, follow_redirects=False
        )
        assert answer.status_code == 303, answer.text

    def csrf(self, path: str = "/admin/editions/1") -> str:
        found = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(path).text)
        assert found
        return found.group(1)


@pytest.fixture
def site(engine: Engine, settings: Settings) -> Iterator[Site]:
    """A draft edition of 2026-W47 for two readers, an editor and an operator."""
    store_payload(engine, example_payload())
    add_subscribers(engine, "ada@example.com", "grace@example.com")
    require_approval(engine)
    weekly.prepare_week(engine, settings, week="2026-W47")
    with db.session_scope(engine) as session:
        users.add(session, "editor@example.com", role=Role.EDITOR, password=PASSWORD, now=utcnow())
        users.add(
            session, "operator@example.com", role=Role.OPERATOR, password=PASSWORD, now=utcnow()
        )
    made = Site(engine, settings)
    with made.client:
        yield made


def edition(engine: Engine) -> Edition:
    with db.session_scope(engine) as session:
        found = session.get(Edition, 1)
        assert found is not None
        return found


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_anonymous_requests_are_sent_to_sign_in(site: Site, method: str, path: str) -> None:
    answer = site.client.request(method, path, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/admin/login?next=")


def test_a_wrong_password_is_refused_and_the_session_cookie_is_locked_down(site: Site) -> None:
    wrong = site.client.post("/admin/login", data={"email": "editor@example.com", "password": "x"})
    assert wrong.status_code == 401 and "do not match" in wrong.text
    right = site.client.post(
        "/admin/login",
        data={"email": "editor@example.com", "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie


def test_sign_in_is_rate_limited(site: Site) -> None:
    codes = [
        site.client.post(
            "/admin/login", data={"email": "editor@example.com", "password": "nope"}
        ).status_code
        for _ in range(12)
    ]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


def test_the_next_parameter_never_leaves_the_admin_area(site: Site) -> None:
    for target in ("https://evil.example/", "//evil.example/admin", "/elsewhere"):
        answer = site.client.post(
            "/admin/login",
            data={"email": "editor@example.com", "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/admin"


def test_an_editor_cannot_pause_cancel_or_resume(engine: Engine, site: Site) -> None:
    site.sign_in("editor@example.com")
    token = site.csrf()
    for action in ("pause", "cancel", "resume"):
        answer = site.client.post(f"/admin/editions/1/{action}", data={"csrf_token": token})
        assert answer.status_code == 403 and "cannot" in answer.text
    assert edition(engine).status == EditionStatus.DRAFT


def test_a_post_without_the_csrf_token_changes_nothing(engine: Engine, site: Site) -> None:
    site.sign_in("operator@example.com")
    for action in ("approve", "cancel", "retitle"):
        answer = site.client.post(f"/admin/editions/1/{action}", data={"subject": "Hijacked"})
        assert answer.status_code == 403
    forged = site.client.post("/admin/editions/1/approve", data={"csrf_token": "a.b"})
    assert forged.status_code == 403
    assert edition(engine).status == EditionStatus.DRAFT
    assert edition(engine).subject == example_payload()["title"]


def test_the_preview_shows_inbox_line_both_frames_text_and_links(site: Site) -> None:
    site.sign_in("editor@example.com")
    page = site.client.get("/admin/editions/1").text
    payload = example_payload()
    assert 'id="inbox-subject">' in page and "Weekly AI Tool Verdicts" in page
    assert 'width="620" sandbox srcdoc=' in page and 'width="375" sandbox srcdoc=' in page
    assert 'aria-label="Plain-text part"' in page
    assert f'<a href="{payload["url"]}"' in page  # the links list shows real targets


def test_an_editor_retitles_a_draft_and_the_content_hash_follows(
    engine: Engine, site: Site
) -> None:
    site.sign_in("editor@example.com")
    before = edition(engine).content_hash
    site.client.post(
        "/admin/editions/1/retitle",
        data={"csrf_token": site.csrf(), "subject": "New subject", "preheader": "New line"},
    )
    after = edition(engine)
    assert (after.subject, after.preheader) == ("New subject", "New line")
    assert after.content_hash != before and "<title>New subject</title>" in after.html


def test_a_test_send_is_marked_and_not_counted(engine: Engine, site: Site) -> None:
    site.sign_in("editor@example.com")
    answer = site.client.post(
        "/admin/editions/1/test",
        data={"csrf_token": site.csrf(), "addresses": "me@example.com, you@example.com"},
    )
    assert "Test sent to me@example.com, you@example.com" in answer.text
    assert [m.subject.startswith("[TEST] ") for m in site.mail.sent] == [True, True]
    with db.session_scope(engine) as session:
        assert list(session.exec(select(Delivery))) == []


def test_approval_records_who_and_sends_the_approved_render(engine: Engine, site: Site) -> None:
    site.sign_in("editor@example.com")
    frozen = edition(engine).content_hash
    site.client.post("/admin/editions/1/approve", data={"csrf_token": site.csrf()})
    approved = edition(engine)
    assert approved.approved_by == "editor@example.com" and approved.approved_at is not None
    assert approved.content_hash == frozen
    deadline = time.monotonic() + 20  # the embedded setup sends on a thread of the web process
    while edition(engine).status != EditionStatus.SENT and time.monotonic() < deadline:
        time.sleep(0.05)
    assert edition(engine).status == EditionStatus.SENT
    assert sorted(m.to_address for m in site.mail.sent) == ["ada@example.com", "grace@example.com"]


def test_a_comparison_reimported_after_approval_shows_source_changed_and_sends_the_approved(
    engine: Engine, site: Site
) -> None:
    site.sign_in("editor@example.com")
    approved_html = edition(engine).html
    site.client.post("/admin/editions/1/approve", data={"csrf_token": site.csrf()})
    deadline = time.monotonic() + 20
    while edition(engine).status != EditionStatus.SENT and time.monotonic() < deadline:
        time.sleep(0.05)
    changed = example_payload()
    changed["dek"] = "A different dek after approval."
    store_payload(engine, changed)
    page = site.client.get("/admin/editions/1").text
    assert "Source changed since approval" in page
    assert edition(engine).html == approved_html
    sent = [m for m in site.mail.sent if not m.subject.startswith("[TEST]")]
    assert len(sent) == 2 and all("A different dek" not in m.html for m in sent)


def test_signing_out_ends_the_session(site: Site) -> None:
    site.sign_in("editor@example.com")
    site.client.post("/admin/logout", data={"csrf_token": site.csrf("/admin")})
    assert site.client.get("/admin", follow_redirects=False).status_code == 303


def test_users_are_added_from_the_cli_with_a_password_from_stdin() -> None:
    from typer.testing import CliRunner

    from worker.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    short = runner.invoke(
        app, ["users", "add", "a@example.com", "--role", "editor", "--password-stdin"], input="x\n"
    )
    assert short.exit_code == 2 and "at least 12 characters" in short.stderr
    added = runner.invoke(
        app,
        ["users", "add", "a@example.com", "--role", "operator", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    assert added.exit_code == 0, added.output
    again = runner.invoke(
        app,
        ["users", "add", "A@example.com", "--role", "editor", "--password-stdin"],
        input=f"{PASSWORD}\n",
    )
    assert again.exit_code == 2 and "already has an admin account" in again.stderr
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert '"role": "operator"' in listed.stdout


# --- subscribers ---------------------------------------------------------------------------------


def test_subscribers_page_searches_filters_and_counts(site: Site) -> None:
    site.sign_in("editor@example.com")
    page = site.client.get("/admin/subscribers").text
    assert "2 in all" in page and "active 2" in page
    found = site.client.get("/admin/subscribers", params={"q": "GRACE"}).text
    assert "grace@example.com" in found and "ada@example.com" not in found
    none = site.client.get("/admin/subscribers", params={"status": "bounced"}).text
    assert "Nobody matches." in none
    odd = site.client.get("/admin/subscribers", params={"status": "nonsense", "page": "-3"})
    assert odd.status_code == 200


def test_csv_import_reports_row_by_row_and_only_operators_may(engine: Engine, site: Site) -> None:
    upload = "email,name\nnew@example.com,New\nnot-an-address,X\nada@example.com,Ada\n"
    site.sign_in("editor@example.com")
    refused = site.client.post(
        "/admin/subscribers/import",
        data={"csrf_token": site.csrf("/admin/subscribers")},
        files={"file": ("readers.csv", upload, "text/csv")},
    )
    assert refused.status_code == 403
    site.sign_in("operator@example.com")
    answer = site.client.post(
        "/admin/subscribers/import",
        data={"csrf_token": site.csrf("/admin/subscribers")},
        files={"file": ("readers.csv", upload, "text/csv")},
    )
    assert answer.status_code == 200
    assert "1 added, 1 duplicates skipped" in answer.text and "line 3:" in answer.text
    bad = site.client.post(
        "/admin/subscribers/import",
        data={"csrf_token": site.csrf("/admin/subscribers")},
        files={"file": ("x.csv", b"\xff\xfe\x00bad", "text/csv")},
    )
    assert bad.status_code == 422 and "not UTF-8" in bad.text


def test_csv_export_lists_every_subscriber(site: Site) -> None:
    site.sign_in("editor@example.com")
    answer = site.client.get("/admin/subscribers.csv")
    assert answer.headers["content-type"].startswith("text/csv")
    lines = answer.text.strip().splitlines()
    assert lines[0] == "email,name,status,created_at"
    assert sorted(line.split(",")[0] for line in lines[1:]) == [
        "ada@example.com",
        "grace@example.com",
    ]


# --- stats -------------------------------------------------------------------------------------


def test_the_stats_page_shows_the_figures_of_the_events_and_exports_csv(
    engine: Engine, settings: Settings, site: Site
) -> None:
    site.sign_in("operator@example.com")
    site.client.post("/admin/editions/1/approve", data={"csrf_token": site.csrf()})
    deadline = time.monotonic() + 20
    while edition(engine).status != EditionStatus.SENT and time.monotonic() < deadline:
        time.sleep(0.05)
    with db.session_scope(engine) as session:
        session.execute(update(Delivery).values(sent_at=utcnow() - timedelta(hours=2)))
        ids = [d.id for d in session.exec(select(Delivery).order_by(Delivery.id))]  # type: ignore[arg-type]
    browser = "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"
    for delivery_id, agent in ((ids[0], browser), (ids[0], browser), (ids[1], "Mozilla/5.0")):
        engagement.record(
            engine,
            kind=EventKind.OPEN,
            delivery_id=delivery_id or 0,
            user_agent=agent,
            client_ip=None,
            now=utcnow(),
        )
    engagement.record(
        engine,
        kind=EventKind.CLICK,
        delivery_id=ids[0] or 0,
        user_agent=browser,
        client_ip=None,
        now=utcnow(),
        url="https://example.com/a?x=<b>",
    )
    with db.session_scope(engine) as session:
        grace = session.get(Delivery, ids[1])
        assert grace is not None
        subscribers.unsubscribe_by_link(session, grace.subscriber_id, grace.id)
    page = site.client.get("/admin/editions/1/stats").text
    with db.session_scope(engine) as session:
        figures = stats.of_edition(session, 1)
    assert (figures.unique_human_opens, figures.human_opens, figures.machine_opens) == (1, 2, 1)
    assert figures.unsubscribes == 1 and figures.human_clicks == 1
    assert f'id="unique-human-opens">{figures.unique_human_opens}<' in page
    assert f'id="opens">{figures.human_opens} / {figures.machine_opens}<' in page
    assert f'id="unsubscribes">{figures.unsubscribes}<' in page
    assert "https://example.com/a?x=&lt;b&gt;" in page and "<b>" not in page.split("<h2>Clicks")[1]
    assert page.count("<svg") == 3
    exported = site.client.get("/admin/editions/1/stats.csv").text.splitlines()
    assert exported[0] == "metric,value" and "unsubscribes,1" in exported
    outcomes = site.client.get("/admin/editions/1/outcomes.csv").text.splitlines()
    assert len(outcomes) == 3 and outcomes[0].startswith("email,")
    assert site.client.get("/admin/editions/9/stats").status_code == 404
