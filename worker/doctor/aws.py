"""Reaching SES v2 and SNS for the doctor: boto3 clients, and errors turned into a detail and fix.

Provider errors are classified here, at the boundary. Once SES refuses the credentials or cannot
be reached, later SES calls are not made: each check that needed one is reported as skipped,
pointing at `ses-credentials`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from worker.config import Settings
from worker.doctor.base import CONNECT_TIMEOUT_S, CheckFailed, Probe, Skipped, one_line

MAX_SUBSCRIPTION_PAGES = 50  # 100 subscriptions a page: far more than a real topic has
FIX_CREDENTIALS_FIRST = "fix the ses-credentials check first"


class Problem(StrEnum):
    AUTH = "auth"  # no credentials, or AWS does not accept them
    DENIED = "denied"  # valid credentials without permission for this action
    NOT_FOUND = "not found"
    UNREACHABLE = "unreachable"
    NO_CLIENT = "no client"  # boto3 would not even build a client from the settings
    OTHER = "other"


# After these, every further call to the same service would fail the same way.
BLOCKING = {
    Problem.AUTH: "SES refused the credentials",
    Problem.UNREACHABLE: "SES is unreachable",
    Problem.NO_CLIENT: "no SES client could be made",
}


AUTH_CODES = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidSignatureException",
    }
)
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "AuthorizationError"})
NOT_FOUND_CODES = frozenset({"NotFoundException", "NotFound"})


class AwsCallFailed(CheckFailed):
    """An AWS call that did not answer; `detail` and `fix` are ready for the report."""

    def __init__(self, problem: Problem, detail: str, fix: str) -> None:
        super().__init__(detail, fix)
        self.problem = problem


def _client_config() -> Any:
    from botocore.config import Config

    # One attempt with short timeouts: the doctor reports; it does not wait out an outage.
    return Config(
        retries={"total_max_attempts": 1},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=CONNECT_TIMEOUT_S * 2,
    )


def _session() -> Any:
    import boto3  # loads only when SES is checked, as in worker.transports

    # A new session each time, not boto3's default one: that caches the credentials it first
    # found, and the doctor must judge the ones in the environment now.
    return boto3.session.Session()


def ses_client(settings: Settings) -> Any:
    """A boto3 `sesv2` client, pointed where the SES transport sends."""
    return _session().client(
        "sesv2",
        region_name=settings.ses_region,
        endpoint_url=settings.ses_endpoint_url,
        config=_client_config(),
    )


def sns_client(settings: Settings, region: str) -> Any:
    return _session().client(
        "sns", region_name=region, endpoint_url=settings.sns_endpoint_url, config=_client_config()
    )


def _classify(error: Exception, *, action: str, where: str, settings: str) -> AwsCallFailed:
    """`action` as IAM names it (ses:GetAccount); `where` is the region and endpoint called;
    `settings` names the settings that chose them."""
    credentials_fix = (
        "give this host valid AWS credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        f"AWS_PROFILE or an instance role) for {where}"
    )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return AwsCallFailed(Problem.AUTH, f"{action}: no AWS credentials found", credentials_fix)
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = f"{action} refused: {code or status}: {one_line(message)}"
        if code in AUTH_CODES or status == 401:
            return AwsCallFailed(Problem.AUTH, detail, credentials_fix)
        if code in DENIED_CODES or status == 403:
            return AwsCallFailed(
                Problem.DENIED, detail, f"allow {action} for these credentials in IAM"
            )
        if code in NOT_FOUND_CODES or status == 404:
            return AwsCallFailed(Problem.NOT_FOUND, detail, "create it (see the detail)")
        return AwsCallFailed(Problem.OTHER, detail, "look into the error, then run doctor again")
    unreachable = (
        EndpointConnectionError,
        ConnectTimeoutError,
        ReadTimeoutError,
        ConnectionClosedError,
    )
    if isinstance(error, unreachable):
        return AwsCallFailed(
            Problem.UNREACHABLE,
            f"{action}: {where} is unreachable: {one_line(str(error))}",
            f"check {settings}, and that this host can reach AWS over HTTPS",
        )
    return AwsCallFailed(
        Problem.OTHER,
        f"{action} failed: {one_line(str(error))}",
        "look into the error, then run doctor again",
    )


def ses_where(settings: Settings) -> str:
    endpoint = f" at {settings.ses_endpoint_url}" if settings.ses_endpoint_url else ""
    return f"SES in {settings.ses_region}{endpoint}"


def ses_call(probe: Probe, operation: str, **params: str) -> Mapping[str, Any]:
    """One SES v2 call (e.g. "GetEmailIdentity"), made at most once per doctor run."""
    settings = probe.settings
    if not settings.ses_region:
        raise Skipped("SES_REGION is not set", "fix the transport check first")
    blocked = probe.blocked.get("ses")
    if blocked is not None and operation != "GetAccount":
        raise Skipped(blocked, FIX_CREDENTIALS_FIRST)

    def fetch() -> Mapping[str, Any]:
        try:
            client = _client(probe, ("ses client",), lambda: probe.clients.ses(settings))
            answer: Mapping[str, Any] = getattr(client, _snake(operation))(**params)
        except (ClientError, BotoCoreError) as error:
            failure = _classify(
                error,
                action=f"ses:{operation}",
                where=ses_where(settings),
                settings="SES_REGION and SES_ENDPOINT_URL",
            )
        except AwsCallFailed as error:
            failure = error
        else:
            return answer
        if failure.problem in BLOCKING:
            probe.blocked["ses"] = BLOCKING[failure.problem]
        raise failure

    result: Mapping[str, Any] = probe.once(("ses", operation, *sorted(params.items())), fetch)
    return result


def _client(probe: Probe, key: tuple[str, ...], build: Callable[[], Any]) -> Any:
    """A boto3 client built once; AwsCallFailed when the settings cannot make one."""
    try:
        return probe.once(key, build)
    except (BotoCoreError, ValueError) as error:  # e.g. an endpoint URL that is not a URL
        raise AwsCallFailed(
            Problem.NO_CLIENT,
            f"no {key[0]} could be made: {one_line(str(error))}",
            "check the region and endpoint settings (SES_REGION, SES_ENDPOINT_URL, "
            "SNS_ENDPOINT_URL)",
        ) from None


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def get_account(probe: Probe) -> Mapping[str, Any]:
    try:
        return ses_call(probe, "GetAccount")
    except AwsCallFailed:
        raise Skipped("GetAccount did not answer", FIX_CREDENTIALS_FIRST) from None


def _region_of(arn: str, settings: Settings) -> str:
    parts = arn.split(":")  # arn:aws:sns:REGION:ACCOUNT:NAME
    return parts[3] if len(parts) > 5 and parts[3] else settings.ses_region or "us-east-1"


def sns_subscriptions(probe: Probe, topic: str) -> list[Mapping[str, Any]]:
    """Every subscription of `topic`, page after page (SNS lists 100 at a time)."""
    settings = probe.settings
    region = _region_of(topic, settings)
    client = _client(probe, ("sns client", region), lambda: probe.clients.sns(settings, region))
    found: list[Mapping[str, Any]] = []
    params: dict[str, str] = {"TopicArn": topic}
    for _ in range(MAX_SUBSCRIPTION_PAGES):
        try:
            page = client.list_subscriptions_by_topic(**params)
        except (ClientError, BotoCoreError) as error:
            endpoint = f" at {settings.sns_endpoint_url}" if settings.sns_endpoint_url else ""
            raise _classify(
                error,
                action="sns:ListSubscriptionsByTopic",
                where=f"SNS in {region}{endpoint}",
                settings="the topic ARN's region and SNS_ENDPOINT_URL",
            ) from None
        found += page.get("Subscriptions", [])
        if not page.get("NextToken"):
            break
        params["NextToken"] = str(page["NextToken"])
    return found
