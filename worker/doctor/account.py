"""Checks of the SES account (credentials, sending, sandbox, quota) and of the sender identity."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from worker.doctor.aws import AwsCallFailed, Problem, get_account, ses_call, ses_where
from worker.doctor.base import CheckResult, Probe, failed, passed


def check_credentials(probe: Probe) -> CheckResult:
    ses_call(probe, "GetAccount")
    return passed("ses-credentials", f"GetAccount answered: {ses_where(probe.settings)}")


def check_sending(probe: Probe) -> CheckResult:
    account = get_account(probe)
    status = str(account.get("EnforcementStatus", "unknown"))
    if not account.get("SendingEnabled", False):
        return failed(
            "ses-sending",
            f"sending is paused for the account (enforcement status {status})",
            "find the cause under Reputation metrics in the SES console, then "
            "`aws sesv2 put-account-sending-attributes --sending-enabled`",
        )
    if status != "HEALTHY":
        return failed(
            "ses-sending",
            f"sending is enabled but the enforcement status is {status}",
            "bring the bounce and complaint rates down (SES console, Reputation metrics) "
            "before AWS pauses sending",
        )
    return passed("ses-sending", "sending enabled, enforcement status HEALTHY")


def check_production_access(probe: Probe) -> CheckResult:
    account = get_account(probe)
    if account.get("ProductionAccessEnabled", False):
        return passed("ses-production-access", "production access: mail goes to any address")
    review = account.get("Details", {}).get("ReviewDetails", {}).get("Status")
    return failed(
        "ses-production-access",
        "the account is in the SES sandbox: it sends only to verified addresses"
        + (f" (production access request: {review})" if review else ""),
        "request production access in the SES console (Account dashboard → Request production "
        "access) before the first real issue",
    )


def check_quota(probe: Probe) -> CheckResult:
    quota = get_account(probe).get("SendQuota", {})
    rate = float(quota.get("MaxSendRate", 0))
    daily = float(quota.get("Max24HourSend", 0))
    sent = float(quota.get("SentLast24Hours", 0))
    unlimited = daily < 0  # SES reports -1 for an unlimited daily quota
    detail = (
        f"MaxSendRate {rate:g}/s, Max24HourSend {'unlimited' if unlimited else f'{daily:g}'}, "
        f"SentLast24Hours {sent:g}"
    )
    if not unlimited and sent >= daily:
        return failed(
            "ses-quota",
            f"{detail}: the daily quota is used up",
            "wait for the last 24 hours' sends to age out, or request a higher sending quota "
            "in the SES console",
        )
    return passed("ses-quota", detail)


def _identity_problem(identity: str, answer: Mapping[str, Any]) -> tuple[str, str] | None:
    """(detail, fix) when SES will not send as `identity` with DKIM; None when it will."""
    domain = identity.rsplit("@", 1)[-1]
    if not answer.get("VerifiedForSendingStatus", False):
        status = answer.get("VerificationStatus", "not verified")
        if "@" in identity:
            fix = f"click the link SES mailed to {identity}, or verify the domain {domain}"
        else:
            fix = f"publish the DNS records SES lists for {domain} and wait for verification"
        return f"{identity} is not verified for sending (verification {status})", fix
    dkim = answer.get("DkimAttributes", {})
    status = str(dkim.get("Status", "NOT_STARTED"))
    if not dkim.get("SigningEnabled", True):
        return f"{identity}: DKIM signing is disabled", f"enable DKIM signing for {identity}"
    if status != "SUCCESS":
        return (
            f"{identity} is verified but its DKIM status is {status}",
            f"publish the DKIM CNAME records SES lists for {domain}; it checks DNS for 72 hours",
        )
    return None


def check_identity(probe: Probe) -> CheckResult:
    settings = probe.settings
    address = parseaddr(settings.from_address)[1].lower()
    if "@" not in address:
        return failed(
            "ses-identity",
            f"FROM_ADDRESS {settings.from_address!r} holds no email address",
            "set FROM_ADDRESS to 'Name <newsletter@your-domain>'",
        )
    domain = address.rsplit("@", 1)[1]
    problems: list[tuple[str, str]] = []
    # SES sends as an address when either the address or its whole domain is verified.
    for identity in (address, domain):
        try:
            answer = ses_call(probe, "GetEmailIdentity", EmailIdentity=identity)
        except AwsCallFailed as failure:
            if failure.problem == Problem.NOT_FOUND:
                continue
            raise
        problem = _identity_problem(identity, answer)
        if problem is None:
            return passed("ses-identity", f"{identity} is verified for sending, DKIM SUCCESS")
        problems.append(problem)
    if problems:
        detail, fix = problems[0]
        return failed("ses-identity", detail, fix)
    return failed(
        "ses-identity",
        f"neither {address} nor {domain} is an identity in {ses_where(settings)}",
        f"`aws sesv2 create-email-identity --email-identity {domain}`, then publish the DKIM "
        "records it lists",
    )
