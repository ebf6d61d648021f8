"""Figures for the send path: render once vs personalise-and-build per recipient.

Prints (a) the time to render one edition (Jinja2 → MJML → HTML with CSS inlined, plus text),
(b) personalised full-MIME messages built per second for 10,000 recipients on one core, and
(c) the same with a full `mjml2html` render per recipient, with the ratio b / c.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from emails import placeholders
from emails.render import Footer, render_weekly
from worker.comparisons import parse_document
from worker.config import Settings
from worker.delivery import Claimed
from worker.editions import edition_of
from worker.models import EditionStatus
from worker.sending import personalise, prepare_mail
from worker.transports import mime

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "claude-4-api-vs-code-llama-4.json"
RECIPIENTS = int(__import__("os").environ.get("BENCH_RECIPIENTS", "10000"))
PER_RECIPIENT_RENDER_SAMPLE = 300


def main() -> None:
    doc = parse_document(EXAMPLE.read_bytes(), source=EXAMPLE.name)
    settings = Settings(
        _env_file=None,
        VAR_DIR=tempfile.mkdtemp(),
        SECRET_KEY="bench",
        POSTAL_ADDRESS="1 Example Street",
    )
    footer = Footer(
        postal_address=settings.postal_address, public_base_url=settings.public_base_url
    )
    key = placeholders.new_key()

    timings = []
    for _ in range(30):
        started = time.perf_counter()
        rendered = render_weekly(doc, key=key, footer=footer)
        timings.append(time.perf_counter() - started)
    render_ms = statistics.median(timings) * 1000

    edition = edition_of(
        rendered,
        key=key,
        comparison_id=1,
        schedule_id=1,
        period_key="2026-W47",
        source_hash="",
        status=EditionStatus.SENDING,
    )
    edition.id = 1
    signing_key = settings.signing_key()
    recipients = [
        Claimed(
            delivery_id=i,
            subscriber_id=i,
            email=f"reader{i}@example.com",
            name=f"Reader {i}",
            active=True,
        )
        for i in range(RECIPIENTS)
    ]

    started = time.perf_counter()
    mail = prepare_mail(edition, doc.slug, settings)
    size_bytes = 0
    for recipient in recipients:
        size_bytes += len(mime.build(personalise(mail, recipient, settings, signing_key)))
    built_s = time.perf_counter() - started
    per_s = RECIPIENTS / built_s

    started = time.perf_counter()
    for recipient in recipients[:PER_RECIPIENT_RENDER_SAMPLE]:
        own_key = placeholders.new_key()
        own = render_weekly(doc, key=own_key, footer=footer)
        solo = edition.model_copy(
            update={"html": own.html, "text": own.text, "placeholder_key": own_key}
        )
        mime.build(
            personalise(prepare_mail(solo, doc.slug, settings), recipient, settings, signing_key)
        )
    naive_per_s = PER_RECIPIENT_RENDER_SAMPLE / (time.perf_counter() - started)

    print(
        f"python {sys.version.split()[0]}, one core, "
        f"example comparison ({len(rendered.html):,} bytes of HTML)"
    )
    print(
        f"(a) render one edition (MJML + CSS inline + text):     {render_ms:8.2f} ms (median of 30)"
    )
    print(
        f"(b) personalised MIME messages, render once:          {per_s:8,.0f} msg/s "
        f"({RECIPIENTS:,} recipients in {built_s:.2f} s, "
        f"{size_bytes / RECIPIENTS / 1024:.1f} KiB each)"
    )
    print(f"(c) same, with mjml2html per recipient:               {naive_per_s:8,.0f} msg/s")
    print(f"    ratio b / c:                                      {per_s / naive_per_s:8.1f}x")


if __name__ == "__main__":
    main()
