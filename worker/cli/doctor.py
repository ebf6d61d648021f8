"""`newsletter doctor`: is this setup ready for production? One ✓ or ✗ line per check."""

from __future__ import annotations

import typer
from pydantic import ValidationError
from rich.text import Text

from worker.cli.common import out, print_json
from worker.config import get_settings
from worker.doctor import CheckResult, invalid_settings, run_checks


def doctor(
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print the results as a JSON list of {name, ok, detail, fix, skipped}.",
    ),
) -> None:
    """Check the production setup: each check gets ✓, or ✗ and a one-line fix.

    database, migrations: reachable, and at the newest revision.
    redis: reachable, when REDIS_URL is set (else the in-process broker is used).
    transport: outbox folder writable, SMTP_HOST set, or SES_REGION set.
    With NEWSLETTER_TRANSPORT=ses, over the SES v2 and SNS APIs:
      ses-credentials: GetAccount succeeds with this host's AWS credentials;
      ses-sending, ses-production-access, ses-quota: sending enabled, out of
        the sandbox, daily quota not used up (rate, quota and usage shown);
      ses-identity: FROM_ADDRESS or its domain verified, DKIM SUCCESS;
      ses-configuration-set, ses-event-destinations: SES_CONFIGURATION_SET
        exists and sends BOUNCE, COMPLAINT, DELIVERY events to SNS;
      sns-subscription: that topic posts to PUBLIC_BASE_URL/hooks/ses over
        https, confirmed; sns-topic-allowed: it is in SNS_TOPIC_ARNS.
    public-base-url is https; secret-key is a real key of 32+ characters;
    postal-address is set.

    Nothing is changed, and a failing check does not hide the others (a check
    that needs a failed one says "skipped"). Exit 1 on any ✗, else 0.
    """
    try:
        results = run_checks(get_settings())
    except ValidationError as error:
        results = [invalid_settings(error)]
    if as_json:
        print_json([result.as_dict() for result in results])
    else:
        _print_report(results)
    if not all(result.ok for result in results):
        raise typer.Exit(1)


def _print_report(results: list[CheckResult]) -> None:
    width = max(len(result.name) for result in results)
    for result in results:
        if result.ok:
            mark = Text("✓", style="green")
        else:
            mark = Text("✗", style="yellow" if result.skipped else "red")
        # Text, not markup: details quote settings and AWS messages that may hold "[…]".
        out.print(Text.assemble(mark, " ", (result.name.ljust(width), "bold"), "  ", result.detail))
        if result.fix:
            out.print(Text.assemble(" " * (width + 4), ("fix: ", "yellow"), result.fix))
    failed = sum(not result.ok and not result.skipped for result in results)
    skipped = sum(result.skipped for result in results)
    if not failed and not skipped:
        out.print(f"all {len(results)} checks passed")
        return
    out.print(f"{failed} failed, {skipped} skipped, of {len(results)} checks")
