"""`newsletter doctor`'s checks of a production setup: one result per check, none ever raises.

base.py holds the result type and the Probe every check reads; services.py checks the database,
Redis and the transport; settings.py the settings every email relies on; aws.py reaches SES and
SNS, for account.py (the SES account and sender) and events.py (events back to /hooks/ses).
"""

from __future__ import annotations

import contextlib

from pydantic import ValidationError

from worker.config import Settings, setting_problems
from worker.doctor import account, aws, events, services
from worker.doctor import settings as setting_checks
from worker.doctor.base import Check, CheckResult, Clients, Probe, failed, run_one

SES_CHECKS: list[tuple[str, Check]] = [
    ("ses-credentials", account.check_credentials),
    ("ses-sending", account.check_sending),
    ("ses-production-access", account.check_production_access),
    ("ses-quota", account.check_quota),
    ("ses-identity", account.check_identity),
    ("ses-configuration-set", events.check_configuration_set),
    ("ses-event-destinations", events.check_event_destinations),
    ("sns-subscription", events.check_subscription),
    ("sns-topic-allowed", events.check_topic_allowed),
]


def default_clients() -> Clients:
    return Clients(
        engine=services.make_engine,
        redis=services.make_redis,
        ses=aws.ses_client,
        sns=aws.sns_client,
    )


def checks_for(settings: Settings) -> list[tuple[str, Check]]:
    """Every check that applies to these settings, in report order."""
    return [
        ("database", services.check_database),
        ("migrations", services.check_migrations),
        ("redis", services.check_redis),
        ("transport", services.check_transport),
        *(SES_CHECKS if settings.transport == "ses" else []),
        ("public-base-url", setting_checks.check_public_base_url),
        ("secret-key", setting_checks.check_secret_key),
        ("postal-address", setting_checks.check_postal_address),
    ]


def run_checks(settings: Settings, clients: Clients | None = None) -> list[CheckResult]:
    probe = Probe(settings=settings, clients=clients or default_clients())
    try:
        return [run_one(name, check, probe) for name, check in checks_for(settings)]
    finally:
        with contextlib.suppress(Exception):  # a broken pool must not hide the report
            probe.close()


def invalid_settings(error: ValidationError) -> CheckResult:
    """The one result when the settings cannot even be read: every other check needs them."""
    return failed("settings", "; ".join(setting_problems(error)), "correct the settings named here")


__all__ = ["CheckResult", "Clients", "default_clients", "invalid_settings", "run_checks"]
