"""`newsletter doctor` as an operator runs it: the `newsletter` script in a subprocess, its
settings in the environment, against real services. SES is the local v2 emulator behind
tests/aws_setup_stub.py (the setup APIs the emulator lacks, and SNS), PostgreSQL and Redis are
the local servers; boto3 reaches every one of them over HTTP.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from alembic import command
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from tests.aws_setup_stub import (
    AwsSetup,
    AwsSetupStub,
    ConfigurationSet,
    Destination,
    Identity,
    Subscription,
)
from tests.conftest import postgres_schema_url, service_unavailable
from tests.ses_emulator import ACCOUNT, free_port, running_emulator
from worker import db
from worker.cli import app
from worker.config import Settings, get_settings
from worker.doctor import default_clients, run_checks

BIN = Path(sys.executable).parent
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-events"
BASE_URL = "https://verdicts.example.org"
HOOK = f"{BASE_URL}/hooks/ses"
SECRET = "9f2c4e7a1b8d3f6e0c5a2d9b7e4f1a3c8d6b0e2f5a7c9d1e3b4f6a8c0d2e4f6a"
REJECTED_KEY = "AKIAREVOKEDREVOKED01"
LOCAL_CHECKS = ["database", "migrations", "redis", "transport"]
SETTING_CHECKS = ["public-base-url", "secret-key", "postal-address"]
SES_CHECKS = [
    "ses-credentials",
    "ses-sending",
    "ses-production-access",
    "ses-quota",
    "ses-identity",
    "ses-configuration-set",
    "ses-event-destinations",
    "sns-subscription",
    "sns-topic-allowed",
]
EVERY_CHECK = [*LOCAL_CHECKS, *SES_CHECKS, *SETTING_CHECKS]
FIX_CREDENTIALS_FIRST = "fix the ses-credentials check first"

runner = CliRunner()


def configured() -> AwsSetup:
    """An AWS account set up as the README asks: verified domain, events to SNS, to our hook."""
    return AwsSetup(
        identities={"example.org": Identity(verified=True, dkim_status="SUCCESS")},
        configuration_sets={
            "newsletter": ConfigurationSet(
                destinations=[
                    Destination(
                        "to-sns",
                        ["SEND", "BOUNCE", "COMPLAINT", "DELIVERY"],
                        topic_arn=TOPIC,
                    )
                ]
            )
        },
        topics={TOPIC: [Subscription(HOOK, protocol="https", confirmed=True)]},
        rejected_access_keys={REJECTED_KEY},
    )


@dataclass
class Report:
    code: int
    stdout: str
    results: list[dict[str, Any]]  # the --json list when run with --json, else []

    def by_name(self) -> dict[str, dict[str, Any]]:
        return {result["name"]: result for result in self.results}

    def failing(self) -> list[str]:
        if self.results:
            return [result["name"] for result in self.results if not result["ok"]]
        return [line.split()[1] for line in self.stdout.splitlines() if line.startswith("✗ ")]

    def line(self, name: str) -> tuple[str, str | None]:
        """The text report's line for a check, and the fix line under it (if any)."""
        lines = self.stdout.splitlines()
        for index, line in enumerate(lines):
            if line[2:].split()[:1] == [name]:
                after = lines[index + 1] if index + 1 < len(lines) else ""
                return line, after.strip() if after.strip().startswith("fix:") else None
        raise AssertionError(f"no {name} line in:\n{self.stdout}")


@dataclass
class Setup:
    """One deployment's environment and folder; `aws` is what the stub answers (when used)."""

    folder: Path
    env: dict[str, str]
    aws: AwsSetup

    def _env(self, changes: Mapping[str, str | None]) -> dict[str, str | None]:
        return {**self.env, **changes}

    def newsletter(self, *args: str, **changes: str | None) -> subprocess.CompletedProcess[str]:
        """The installed `newsletter` script in a subprocess, exactly as an operator runs it."""
        env = {name: value for name, value in self._env(changes).items() if value is not None}
        done = subprocess.run(
            [str(BIN / "newsletter"), *args],
            env=env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done

    def script(self, *args: str, **changes: str | None) -> Report:
        """`newsletter doctor` through the installed script."""
        done = self.newsletter("doctor", *args, **changes)
        results = json.loads(done.stdout) if "--json" in args else []
        return Report(done.returncode, done.stdout, results)

    def doctor(self, *args: str, **changes: str | None) -> Report:
        """`newsletter doctor` in this process: the same command and services, no interpreter
        start-up per run (the script itself is run by the tests that use `script`)."""
        get_settings.cache_clear()  # the command reads the environment given here
        result = runner.invoke(app, ["doctor", *args], env=self._env(changes))
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        results = json.loads(result.stdout) if "--json" in args else []
        return Report(result.exit_code, result.stdout, results)

    def results(self, **changes: str | None) -> Report:
        return self.doctor("--json", **changes)


def local_env(folder: Path) -> dict[str, str]:
    """Everything but the transport: embedded database, no Redis, production-grade settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(folder),
        "VAR_DIR": str(folder / "var"),
        "PUBLIC_BASE_URL": BASE_URL,
        "SECRET_KEY": SECRET,
        "POSTAL_ADDRESS": "Weekly AI Tool Verdicts, 1 Example Street, Springfield",
        "FROM_ADDRESS": "Weekly AI Tool Verdicts <verdicts@example.org>",
        "AWS_EC2_METADATA_DISABLED": "true",  # never wait on an instance role that is not there
    }


def migrate_embedded(folder: Path) -> None:
    engine = db.make_engine(Settings(_env_file=None, VAR_DIR=str(folder / "var")))
    db.upgrade(engine)
    engine.dispose()


@contextmanager
def ses_setup(folder: Path, emulator: str) -> Iterator[Setup]:
    """A migrated embedded database and SES through the stub in front of `emulator`."""
    migrate_embedded(folder)
    with AwsSetupStub(emulator, configured()) as stub:
        env = {
            **local_env(folder),
            "NEWSLETTER_TRANSPORT": "ses",
            "SES_REGION": "us-east-1",
            "SES_ENDPOINT_URL": stub.url,
            "SNS_ENDPOINT_URL": stub.url,
            "SES_CONFIGURATION_SET": "newsletter",
            "SNS_TOPIC_ARNS": TOPIC,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        yield Setup(folder=folder, env=env, aws=stub.setup)


@contextmanager
def emulator_with(account: Mapping[str, Any]) -> Iterator[str]:
    """A second emulator whose GetAccount answers `account`; fails under CI when it cannot."""
    try:
        started = running_emulator(account=account)
        url = started.__enter__()
    except RuntimeError as error:
        service_unavailable("the SES emulator", error)
    try:
        yield url
    finally:
        started.__exit__(None, None, None)


@pytest.fixture
def setup(tmp_path: Path, ses: str) -> Iterator[Setup]:
    with ses_setup(tmp_path, ses) as made:
        yield made


@pytest.fixture
def local(tmp_path: Path) -> Setup:
    migrate_embedded(tmp_path)
    return Setup(folder=tmp_path, env=local_env(tmp_path), aws=AwsSetup())


# ---------------------------------------------------------------- all well


@pytest.mark.postgres
def test_a_fully_configured_production_setup_passes_every_check(
    setup: Setup, pg_schema: str, redis_client: redis.Redis
) -> None:
    setup.env["DATABASE_URL"] = postgres_schema_url(pg_schema)
    setup.env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
    assert setup.newsletter("db", "upgrade").returncode == 0

    report = setup.script()

    assert report.code == 0, report.stdout
    lines = report.stdout.splitlines()
    assert lines[-1] == f"all {len(EVERY_CHECK)} checks passed"
    checks = lines[:-1]
    assert [line.split()[1] for line in checks] == EVERY_CHECK
    assert all(line.startswith("✓ ") for line in checks), report.stdout
    assert "fix:" not in report.stdout
    assert "PostgreSQL at 127.0.0.1:5432/test answers" in report.line("database")[0]
    assert "Redis" in report.line("redis")[0] and "127.0.0.1:6379/0" in report.line("redis")[0]
    assert "MaxSendRate 14/s, Max24HourSend 50000, SentLast24Hours 0" in report.line("ses-quota")[0]
    assert "example.org is verified for sending, DKIM SUCCESS" in report.line("ses-identity")[0]
    assert f"BOUNCE, COMPLAINT, DELIVERY → {TOPIC}" in report.line("ses-event-destinations")[0]
    assert f"{TOPIC} posts to {HOOK}" in report.line("sns-subscription")[0]

    as_json = setup.script("--json")
    assert as_json.code == 0
    assert [result["name"] for result in as_json.results] == EVERY_CHECK
    assert all(result["ok"] and result["fix"] is None for result in as_json.results)


def test_without_redis_url_the_in_process_broker_is_reported_as_fine(setup: Setup) -> None:
    report = setup.results()
    assert report.code == 0, report.results
    assert "in-process broker" in report.by_name()["redis"]["detail"]
    assert "embedded" in report.by_name()["database"]["detail"]


# ---------------------------------------------------------------- the sender identity


@pytest.mark.parametrize(
    ("identity", "detail", "fix"),
    [
        pytest.param(
            Identity(verified=False, dkim_status="PENDING"),
            "example.org is not verified for sending",
            "publish the DNS records SES lists for example.org",
            id="not-verified",
        ),
        pytest.param(
            Identity(verified=True, dkim_status="PENDING"),
            "example.org is verified but its DKIM status is PENDING",
            "publish the DKIM CNAME records SES lists for example.org",
            id="dkim-pending",
        ),
        pytest.param(
            Identity(verified=True, dkim_status="FAILED"),
            "its DKIM status is FAILED",
            "publish the DKIM CNAME records",
            id="dkim-failed",
        ),
    ],
)
def test_an_identity_not_ready_to_send_fails_with_its_fix(
    setup: Setup, identity: Identity, detail: str, fix: str
) -> None:
    setup.aws.identities["example.org"] = identity

    report = setup.script()

    assert report.code == 1
    line, fix_line = report.line("ses-identity")
    assert line.startswith("✗ ses-identity") and detail in line
    assert fix_line is not None and fix in fix_line
    assert report.failing() == ["ses-identity"]


def test_the_from_address_may_be_verified_as_an_address_rather_than_a_domain(
    setup: Setup,
) -> None:
    setup.aws.identities = {"verdicts@example.org": Identity()}
    report = setup.results()
    assert report.code == 0
    assert report.by_name()["ses-identity"]["detail"].startswith("verdicts@example.org is verified")
    # The address is asked for first; the domain only when the address is no identity.
    assert setup.aws.calls.count("GetEmailIdentity") == 1


def test_a_from_address_unknown_to_ses_fails_with_how_to_create_the_identity(
    setup: Setup,
) -> None:
    setup.aws.identities = {}
    result = setup.results().by_name()["ses-identity"]
    assert not result["ok"]
    assert result["detail"].startswith(
        "neither verdicts@example.org nor example.org is an identity"
    )
    assert "create-email-identity --email-identity example.org" in result["fix"]


# ---------------------------------------------------------------- the account


def _account(**changes: Any) -> dict[str, Any]:
    account = copy.deepcopy(ACCOUNT)
    account.update(changes)
    return account


@pytest.mark.parametrize(
    ("account", "check", "detail", "fix"),
    [
        pytest.param(
            _account(
                ProductionAccessEnabled=False,
                SendQuota={"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 12.0},
            ),
            "ses-production-access",
            "the account is in the SES sandbox",
            "request production access",
            id="sandbox",
        ),
        pytest.param(
            _account(
                SendQuota={"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 5e4}
            ),
            "ses-quota",
            "SentLast24Hours 50000: the daily quota is used up",
            "request a higher sending quota",
            id="daily-quota-used-up",
        ),
        pytest.param(
            _account(SendingEnabled=False, EnforcementStatus="SHUTDOWN"),
            "ses-sending",
            "sending is paused for the account (enforcement status SHUTDOWN)",
            "put-account-sending-attributes --sending-enabled",
            id="sending-paused",
        ),
        pytest.param(
            _account(EnforcementStatus="PROBATION"),
            "ses-sending",
            "the enforcement status is PROBATION",
            "bring the bounce and complaint rates down",
            id="probation",
        ),
    ],
)
def test_an_account_problem_fails_its_own_check_only(
    tmp_path: Path, account: dict[str, Any], check: str, detail: str, fix: str
) -> None:
    with emulator_with(account) as emulator, ses_setup(tmp_path, emulator) as setup:
        report = setup.doctor()
        assert report.code == 1
        line, fix_line = report.line(check)
        assert line.startswith(f"✗ {check}") and detail in line
        assert fix_line is not None and fix in fix_line
        assert report.failing() == [check]


def test_the_sandbox_quota_is_shown_in_the_detail(tmp_path: Path) -> None:
    sandbox = _account(
        ProductionAccessEnabled=False,
        SendQuota={"Max24HourSend": 200.0, "MaxSendRate": 1.0, "SentLast24Hours": 12.0},
    )
    with emulator_with(sandbox) as emulator, ses_setup(tmp_path, emulator) as setup:
        quota = setup.results().by_name()["ses-quota"]
    assert quota["ok"]
    assert quota["detail"] == "MaxSendRate 1/s, Max24HourSend 200, SentLast24Hours 12"


@pytest.mark.parametrize(
    ("credentials", "detail"),
    [
        pytest.param(
            {"AWS_ACCESS_KEY_ID": REJECTED_KEY},
            "ses:GetAccount refused: UnrecognizedClientException: The security token included "
            "in the request is invalid.",
            id="rejected",
        ),
        pytest.param(
            {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None},
            "ses:GetAccount: no AWS credentials found",
            id="missing",
        ),
    ],
)
def test_bad_credentials_fail_once_and_skip_every_check_that_needs_them(
    setup: Setup, credentials: dict[str, str | None], detail: str
) -> None:
    report = setup.doctor(**credentials)

    assert report.code == 1
    line, fix_line = report.line("ses-credentials")
    assert line.startswith("✗ ses-credentials") and line.endswith(detail)
    assert fix_line is not None and "give this host valid AWS credentials" in fix_line
    assert report.failing() == SES_CHECKS
    results = setup.results(**credentials).by_name()
    for name in SES_CHECKS[1:]:
        assert results[name]["skipped"], name
        assert results[name]["fix"] == FIX_CREDENTIALS_FIRST
    assert all(results[name]["ok"] for name in LOCAL_CHECKS + SETTING_CHECKS)
    # Nothing more was asked of AWS once it had refused the key.
    assert set(setup.aws.calls) <= {"GetAccount"}


def test_an_unreachable_ses_endpoint_fails_without_a_traceback(setup: Setup) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    report = setup.results(SES_ENDPOINT_URL=closed)
    assert report.code == 1
    credentials = report.by_name()["ses-credentials"]
    assert not credentials["ok"] and "unreachable" in credentials["detail"]
    assert closed in credentials["detail"]
    assert "SES_REGION and SES_ENDPOINT_URL" in credentials["fix"]
    assert all(report.by_name()[name]["skipped"] for name in SES_CHECKS[1:])


def test_an_unreachable_sns_endpoint_fails_the_subscription_check_only(setup: Setup) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    report = setup.results(SNS_ENDPOINT_URL=closed)
    assert report.failing() == ["sns-subscription"]
    subscription = report.by_name()["sns-subscription"]
    assert f"SNS in us-east-1 at {closed} is unreachable" in subscription["detail"]
    assert "SNS_ENDPOINT_URL" in subscription["fix"]


# ---------------------------------------------------------------- events back to /hooks/ses


def test_a_missing_configuration_set_fails_and_its_destinations_are_skipped(
    setup: Setup,
) -> None:
    report = setup.results(SES_CONFIGURATION_SET="weekly")
    results = report.by_name()
    assert report.code == 1
    assert "configuration set 'weekly' does not exist" in results["ses-configuration-set"]["detail"]
    assert (
        "create-configuration-set --configuration-set-name weekly"
        in (results["ses-configuration-set"]["fix"])
    )
    assert results["ses-event-destinations"]["skipped"]
    assert results["sns-subscription"]["skipped"]


def test_an_unset_configuration_set_fails_with_its_fix(setup: Setup) -> None:
    result = setup.results(SES_CONFIGURATION_SET=None).by_name()["ses-configuration-set"]
    assert not result["ok"] and "SES_CONFIGURATION_SET is not set" in result["detail"]
    assert "SES_CONFIGURATION_SET" in result["fix"]


@pytest.mark.parametrize(
    ("destinations", "detail"),
    [
        pytest.param(
            [Destination("to-sns", ["BOUNCE", "COMPLAINT"], topic_arn=TOPIC)],
            "'newsletter' publishes no DELIVERY events to SNS",
            id="no-delivery-events",
        ),
        pytest.param(
            [Destination("to-sns", ["BOUNCE", "COMPLAINT", "DELIVERY"], TOPIC, enabled=False)],
            "no BOUNCE, COMPLAINT, DELIVERY events to SNS (disabled destinations: to-sns)",
            id="destination-disabled",
        ),
        pytest.param(
            [Destination("metrics", ["BOUNCE", "COMPLAINT", "DELIVERY"], topic_arn=None)],
            "publishes no BOUNCE, COMPLAINT, DELIVERY events to SNS",
            id="cloudwatch-only",
        ),
        pytest.param([], "publishes no BOUNCE, COMPLAINT, DELIVERY events", id="none"),
    ],
)
def test_a_configuration_set_without_an_sns_destination_for_our_events_fails(
    setup: Setup, destinations: list[Destination], detail: str
) -> None:
    setup.aws.configuration_sets["newsletter"].destinations = destinations

    report = setup.doctor()

    assert report.code == 1
    line, fix_line = report.line("ses-event-destinations")
    assert line.startswith("✗ ses-event-destinations") and detail in line
    assert fix_line is not None
    assert "BOUNCE, COMPLAINT and DELIVERY to an SNS topic" in fix_line


def test_events_split_over_two_destinations_and_topics_pass_when_both_are_ours(
    setup: Setup,
) -> None:
    second = "arn:aws:sns:us-east-1:123456789012:ses-deliveries"
    setup.aws.configuration_sets["newsletter"].destinations = [
        Destination("problems", ["BOUNCE", "COMPLAINT"], topic_arn=TOPIC),
        Destination("deliveries", ["DELIVERY"], topic_arn=second),
    ]
    setup.aws.topics[second] = [Subscription(HOOK)]
    assert setup.results(SNS_TOPIC_ARNS=f"{TOPIC},{second}").code == 0
    refused = setup.results().by_name()["sns-topic-allowed"]
    assert (
        not refused["ok"] and refused["fix"] == f"add {second} to SNS_TOPIC_ARNS (comma-separated)"
    )


@pytest.mark.parametrize(
    ("subscriptions", "detail", "fix"),
    [
        pytest.param(
            [Subscription("https://old.example.org/hooks/ses")],
            f"{TOPIC} has no subscription to {HOOK} (it posts to https://old.example.org/hooks/ses)",
            f"--topic-arn {TOPIC} --protocol https --notification-endpoint {HOOK}",
            id="subscribed-elsewhere",
        ),
        pytest.param(
            [],
            f"{TOPIC} has no subscription to {HOOK}",
            "aws sns subscribe",
            id="no-subscription",
        ),
        pytest.param(
            [Subscription(HOOK, confirmed=False)],
            f"{TOPIC}: the subscription of {HOOK} awaits confirmation",
            "request confirmation again",
            id="pending-confirmation",
        ),
        pytest.param(
            [Subscription(HOOK, protocol="http")],
            f"{TOPIC} delivers to {HOOK} over http, not https",
            "--protocol https",
            id="not-https",
        ),
    ],
)
def test_a_topic_not_posting_to_our_hook_fails_with_its_fix(
    setup: Setup, subscriptions: list[Subscription], detail: str, fix: str
) -> None:
    setup.aws.topics[TOPIC] = subscriptions

    report = setup.doctor()

    assert report.code == 1
    line, fix_line = report.line("sns-subscription")
    assert line.startswith("✗ sns-subscription") and detail in line
    assert fix_line is not None and fix in fix_line
    assert report.failing() == ["sns-subscription"]


def test_a_topic_that_does_not_exist_fails_the_subscription_check(setup: Setup) -> None:
    del setup.aws.topics[TOPIC]
    result = setup.results().by_name()["sns-subscription"]
    assert not result["ok"] and result["detail"] == f"{TOPIC} does not exist"
    assert result["fix"] == "point the configuration set's event destination at an existing topic"


def test_our_subscription_is_found_on_a_later_page(setup: Setup) -> None:
    setup.aws.subscriptions_per_page = 1
    setup.aws.topics[TOPIC] = [
        Subscription("ops@example.org", protocol="email"),
        Subscription("https://old.example.org/hooks/ses"),
        Subscription(HOOK),
    ]
    assert setup.results().code == 0
    assert setup.aws.calls.count("ListSubscriptionsByTopic") == 3


@pytest.mark.parametrize(
    ("topics", "detail", "fix"),
    [
        pytest.param(
            "arn:aws:sns:us-east-1:123456789012:other",
            f"{TOPIC} is not in SNS_TOPIC_ARNS: /hooks/ses refuses its notifications",
            f"add {TOPIC} to SNS_TOPIC_ARNS",
            id="another-topic",
        ),
        pytest.param(
            "",
            f"{TOPIC} is not in SNS_TOPIC_ARNS",
            f"add {TOPIC} to SNS_TOPIC_ARNS",
            id="empty",
        ),
    ],
)
def test_a_topic_missing_from_sns_topic_arns_fails(
    setup: Setup, topics: str, detail: str, fix: str
) -> None:
    report = setup.doctor(SNS_TOPIC_ARNS=topics)
    assert report.code == 1
    line, fix_line = report.line("sns-topic-allowed")
    assert line.startswith("✗ sns-topic-allowed") and detail in line
    assert fix_line is not None and fix in fix_line


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("changes", "check", "detail", "fix"),
    [
        pytest.param(
            {"PUBLIC_BASE_URL": "http://verdicts.example.org"},
            "public-base-url",
            "http://verdicts.example.org is not https",
            "set PUBLIC_BASE_URL to the https:// address",
            id="http-base-url",
        ),
        pytest.param(
            {"SECRET_KEY": None},
            "secret-key",
            "SECRET_KEY is not set",
            "openssl rand -hex 32",
            id="secret-unset",
        ),
        pytest.param(
            {"SECRET_KEY": "s3cr3t-but-short"},
            "secret-key",
            "SECRET_KEY is 16 characters, under 32",
            "openssl rand -hex 32",
            id="secret-short",
        ),
        pytest.param(
            {"SECRET_KEY": "change-me-to-a-long-random-string-please"},
            "secret-key",
            "looks like a placeholder",
            "openssl rand -hex 32",
            id="secret-placeholder",
        ),
        pytest.param(
            {"SECRET_KEY": "x" * 40},
            "secret-key",
            "looks like a placeholder",
            "openssl rand -hex 32",
            id="secret-one-character",
        ),
        pytest.param(
            {"POSTAL_ADDRESS": " "},
            "postal-address",
            "POSTAL_ADDRESS is empty",
            "set POSTAL_ADDRESS",
            id="no-postal-address",
        ),
    ],
)
def test_a_setting_unfit_for_production_fails_with_its_fix(
    local: Setup, changes: dict[str, str | None], check: str, detail: str, fix: str
) -> None:
    report = local.doctor(**changes)
    assert report.code == 1
    line, fix_line = report.line(check)
    assert line.startswith(f"✗ {check}") and detail in line
    assert fix_line is not None and fix in fix_line
    assert report.failing() == [check]


def test_settings_that_cannot_be_read_are_one_failed_check(local: Setup) -> None:
    report = local.results(PUBLIC_BASE_URL="verdicts.example.org")
    assert report.code == 1
    assert [result["name"] for result in report.results] == ["settings"]
    assert report.results[0]["detail"].startswith("PUBLIC_BASE_URL: ")


# ---------------------------------------------------------------- transports


@pytest.mark.parametrize(
    ("changes", "ok", "detail"),
    [
        pytest.param({}, True, "outbox: .eml files go to", id="outbox"),
        pytest.param(
            {"OUTBOX_DIR": "readers.csv/outbox"}, False, "is a file, not a folder", id="outbox-file"
        ),
        pytest.param(
            {"NEWSLETTER_TRANSPORT": "smtp", "SMTP_HOST": "relay.example.org"},
            True,
            "smtp: relay relay.example.org:587 (starttls)",
            id="smtp",
        ),
        pytest.param(
            {"NEWSLETTER_TRANSPORT": "smtp"}, False, "SMTP_HOST is not set", id="smtp-no-host"
        ),
        pytest.param({"NEWSLETTER_TRANSPORT": "memory"}, False, "never delivered", id="memory"),
        pytest.param(
            {"NEWSLETTER_TRANSPORT": "ses"}, False, "SES_REGION is not set", id="ses-no-region"
        ),
    ],
)
def test_the_transport_check_follows_the_configured_transport(
    local: Setup, changes: dict[str, str], ok: bool, detail: str
) -> None:
    (local.folder / "readers.csv").write_text("email\n")
    results = local.results(**changes).by_name()
    assert results["transport"]["ok"] is ok
    assert detail in results["transport"]["detail"]
    if changes.get("NEWSLETTER_TRANSPORT") != "ses":
        assert not any(name.startswith(("ses-", "sns-")) for name in results)
    else:  # without a region there is no SES to ask: its checks say so instead of guessing
        assert results["ses-credentials"]["skipped"]


# ---------------------------------------------------------------- database and Redis


@pytest.mark.postgres
@pytest.mark.parametrize("state", ["empty", "one-revision-behind"])
def test_an_unmigrated_database_fails_until_db_upgrade(
    local: Setup, pg_schema: str, state: str
) -> None:
    url = postgres_schema_url(pg_schema)
    if state == "one-revision-behind":
        engine = db.make_engine(Settings(_env_file=None, DATABASE_URL=url))
        config = db.alembic_config(engine)
        head = ScriptDirectory.from_config(config).get_revision(db.head_revision())
        assert head is not None and isinstance(head.down_revision, str)
        command.upgrade(config, head.down_revision)
        engine.dispose()

    report = local.doctor(DATABASE_URL=url)

    assert report.code == 1
    line, fix_line = report.line("migrations")
    expected = "no schema yet" if state == "empty" else f"this release needs {db.head_revision()}"
    assert line.startswith("✗ migrations") and expected in line
    assert fix_line == "fix: run `newsletter db upgrade`"
    assert report.line("database")[0].startswith("✓ database")

    assert local.newsletter("db", "upgrade", DATABASE_URL=url).returncode == 0
    assert local.results(DATABASE_URL=url).code == 0


def test_an_unreachable_database_fails_and_its_migrations_are_skipped(local: Setup) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/newsletter"
    results = local.results(DATABASE_URL=closed).by_name()
    database = results["database"]
    assert not database["ok"]
    assert database["detail"].startswith(f"PostgreSQL at 127.0.0.1:{closed.split(':')[2]}")
    assert "unreachable" in database["detail"]
    assert "DATABASE_URL" in database["fix"]
    assert results["migrations"]["skipped"]
    assert results["migrations"]["fix"] == "fix the database check first"


def test_an_unreachable_redis_fails_with_its_fix(local: Setup) -> None:
    port = free_port()
    report = local.doctor(REDIS_URL=f"redis://:hunter2@127.0.0.1:{port}/0")
    assert report.code == 1
    line, fix_line = report.line("redis")
    assert line.startswith("✗ redis") and f"Redis at 127.0.0.1:{port}/0 is unreachable" in line
    assert fix_line == "fix: start Redis or correct REDIS_URL (redis://host:6379/0)"
    assert "hunter2" not in report.stdout


# ---------------------------------------------------------------- the report itself


def test_json_carries_the_same_results_as_the_text(setup: Setup) -> None:
    setup.aws.identities["example.org"] = Identity(dkim_status="PENDING")
    changes: dict[str, str | None] = {"SECRET_KEY": None, "SNS_TOPIC_ARNS": ""}
    text = setup.doctor(**changes)
    as_json = setup.results(**changes)

    assert text.code == as_json.code == 1
    assert set(as_json.results[0]) == {"name", "ok", "detail", "fix", "skipped"}
    for result in as_json.results:
        line, fix_line = text.line(result["name"])
        assert line.startswith("✓ " if result["ok"] else "✗ ")
        assert line.endswith(result["detail"])
        assert fix_line == (f"fix: {result['fix']}" if result["fix"] else None)
    assert text.stdout.splitlines()[-1] == f"3 failed, 0 skipped, of {len(EVERY_CHECK)} checks"


def test_a_check_that_crashes_is_reported_and_the_others_still_run(settings: Settings) -> None:
    def broken_redis(url: str) -> Any:
        raise RuntimeError("the client library blew up")

    with_redis = settings.model_copy(update={"redis_url": "redis://127.0.0.1:6379/0"})
    migrate_embedded(settings.var_dir.parent)
    clients = dataclasses.replace(default_clients(), redis=broken_redis)

    results = {r.name: r for r in run_checks(with_redis, clients)}

    assert list(results) == [*LOCAL_CHECKS, *SETTING_CHECKS]
    assert not results["redis"].ok
    assert results["redis"].detail == (
        "the check itself failed: RuntimeError: the client library blew up"
    )
    assert results["database"].ok and results["migrations"].ok and results["postal-address"].ok
