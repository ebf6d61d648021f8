"""The `newsletter` command as an operator uses it: exit codes, messages, files on disk."""

from __future__ import annotations

import email
import email.policy
import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from bs4 import BeautifulSoup
from typer.testing import CliRunner, Result

from tests.conftest import EXAMPLE, SHARED_COMPARISONS, postgres_schema_url
from tests.helpers import example_payload, write_json
from worker.cli import app

runner = CliRunner()


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env=env)


def _demo(tmp_path: Path) -> None:
    csv = tmp_path / "readers.csv"
    csv.write_text(
        "email,name\nada@example.com,Ada\ngrace@example.com,Grace\n"
        "linus@example.com,Linus Ångström\n"
    )
    for args in (
        ("db", "upgrade"),
        ("comparisons", "import", str(EXAMPLE)),
        ("subscribers", "import", str(csv)),
        ("send-weekly", "--week", "2026-W47"),
    ):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)


def _parse(path: Path) -> EmailMessage:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_demo_sends_one_complete_email_per_subscriber_once(tmp_path: Path) -> None:
    _demo(tmp_path)
    files = sorted((tmp_path / "var" / "outbox").glob("*.eml"))
    assert len(files) == 3
    payload = example_payload()
    quotes = [review["quote"] for review in payload["reviews"]]
    assert len(quotes) == 8
    for file in files:
        message = _parse(file)
        assert message.get_content_type() == "multipart/alternative"
        assert message["Subject"] == payload["title"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        text_part = message.get_body(("plain",))
        html_part = message.get_body(("html",))
        assert text_part is not None and html_part is not None
        text = text_part.get_content()
        html_text = BeautifulSoup(html_part.get_content(), "html.parser").get_text(" ")
        html_text = " ".join(html_text.split())
        for body in (text, html_text):
            for needle in [
                *quotes,
                "100%",
                "75%",
                "—",
                "Paid",
                "Free",
                "Get the next comparison in your inbox",
            ]:
                assert needle in body, (file.name, needle)
    # Running the whole demo again sends no second copy.
    _demo(tmp_path)
    assert sorted((tmp_path / "var" / "outbox").glob("*.eml")) == files
    again = run("send-weekly", "--week", "2026-W47")
    assert "already sent" in again.output


def test_shared_comparisons_import_and_pick(tmp_path: Path) -> None:
    result = run("comparisons", "import", str(SHARED_COMPARISONS))
    assert result.exit_code == 0
    assert "5 created" in result.output
    picked = json.loads(run("comparisons", "pick", "--week", "2026-W47", "--json").stdout)
    assert picked["published_at"].startswith("2026-11-20")
    picked = json.loads(run("comparisons", "pick", "--week", "2026-W46", "--json").stdout)
    assert picked["published_at"].startswith("2026-11-12")
    assert run("comparisons", "import", str(SHARED_COMPARISONS)).output.count("unchanged") == 6


def test_send_weekly_without_a_comparison_exits_3(tmp_path: Path) -> None:
    run("comparisons", "import", str(SHARED_COMPARISONS))
    result = run("send-weekly", "--week", "2026-W49")
    assert result.exit_code == 3
    assert "no comparison published in 2026-W49" in result.output


def test_invalid_files_are_reported_and_the_rest_import(tmp_path: Path) -> None:
    bad = example_payload()
    bad["tools"][0]["panel_ship_pct"] = 140
    bad_file = write_json(tmp_path / "bad.json", bad)
    truncated = tmp_path / "cut.json"
    truncated.write_text(EXAMPLE.read_text()[:500])
    result = run("comparisons", "import", str(bad_file), str(truncated), str(EXAMPLE))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0] == f"invalid: {bad_file}: tools[0].panel_ship_pct: must be 0–100, got 140"
    assert lines[1].startswith(f"invalid: {truncated}: not valid JSON at line")
    assert "Traceback" not in result.output
    listed = json.loads(run("comparisons", "list", "--json").stdout)
    assert [c["slug"] for c in listed] == [example_payload()["slug"]]


def test_an_invalid_reimport_leaves_the_stored_comparison_untouched(tmp_path: Path) -> None:
    run("comparisons", "import", str(EXAMPLE))
    before = run("comparisons", "list", "--json").stdout
    bad = example_payload()
    bad["title"] = "Changed"
    bad["reviews"][0]["tool"] = "nope"
    result = run("comparisons", "import", str(write_json(tmp_path / "x.json", bad)))
    assert result.exit_code == 2
    assert run("comparisons", "list", "--json").stdout == before


def test_preview_writes_the_four_files(tmp_path: Path) -> None:
    run("comparisons", "import", str(EXAMPLE))
    result = run("preview", "--week", "2026-W47", "--out", str(tmp_path / "p"))
    assert result.exit_code == 0
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["email.html", "email.mjml", "email.txt", "subject.txt"]
    assert (tmp_path / "p" / "subject.txt").read_text().strip() == example_payload()["title"]
    assert "%%vm-" not in (tmp_path / "p" / "email.html").read_text()
    assert run("preview", "--out", str(tmp_path / "q")).exit_code == 2


def test_a_preview_links_straight_to_the_comparison_and_counts_no_open(tmp_path: Path) -> None:
    run("comparisons", "import", str(EXAMPLE))
    run("preview", "--week", "2026-W47", "--out", str(tmp_path / "p"))
    html = (tmp_path / "p" / "email.html").read_text()
    assert f'href="{example_payload()["url"]}"' in html
    assert "/c/" not in html and "/o/" not in html
    assert '<img src="data:image/gif;base64,' in html


def test_hostile_title_cannot_add_a_header(tmp_path: Path) -> None:
    hostile = example_payload()
    hostile["title"] = "Hi\r\nBcc: victim@example.com\r\n\r\n<script>alert(1)</script> {{7*7}}"
    run("comparisons", "import", str(write_json(tmp_path / "h.json", hostile)))
    run("subscribers", "add", "ada@example.com")
    assert run("send-weekly", "--week", "2026-W47").exit_code == 0
    (eml,) = (tmp_path / "var" / "outbox").glob("*.eml")
    message = _parse(eml)
    assert message["Bcc"] is None
    assert len(message.get_all("Subject") or []) == 1
    assert message["Subject"] == "Hi Bcc: victim@example.com <script>alert(1)</script> {{7*7}}"


def test_a_bad_setting_is_one_clear_line(tmp_path: Path) -> None:
    result = run("comparisons", "list", env={"NEWSLETTER_TIMEZONE": "Mars/Olympus"})
    assert result.exit_code == 2
    assert "NEWSLETTER_TIMEZONE" in result.stderr and "Mars/Olympus" in result.stderr
    assert "Traceback" not in result.output


def test_subscriber_commands(tmp_path: Path) -> None:
    assert run("subscribers", "add", " Ada@Example.com ", "--name", "Ada").exit_code == 0
    assert run("subscribers", "add", "ada@example.com").exit_code == 2
    assert run("subscribers", "add", "not-an-email").exit_code == 2
    assert run("subscribers", "remove", "ada@example.com").exit_code == 0
    listed = json.loads(run("subscribers", "list", "--json").stdout)
    assert [(s["email"], s["status"]) for s in listed] == [("ada@example.com", "unsubscribed")]
    assert json.loads(run("subscribers", "list", "--status", "active", "--json").stdout) == []


@pytest.mark.postgres
def test_on_postgres_an_unmigrated_schema_is_refused_with_a_hint(pg_schema: str) -> None:
    env = {"DATABASE_URL": postgres_schema_url(pg_schema), "SECRET_KEY": "x"}
    refused = run("comparisons", "list", env=env)
    assert refused.exit_code == 1
    assert "newsletter db upgrade" in refused.stderr
    assert run("db", "upgrade", env=env).exit_code == 0
    assert run("comparisons", "import", str(EXAMPLE), env=env).exit_code == 0
    assert run("subscribers", "add", "ada@example.com", env=env).exit_code == 0
    assert run("send-weekly", "--week", "2026-W47", env=env).exit_code == 0
    assert len(list(Path("var/outbox").glob("*.eml"))) == 1
