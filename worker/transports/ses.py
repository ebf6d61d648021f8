"""Amazon SES v2 transport (boto3 `sesv2`): one SendEmail call per message, raw MIME content.

Raw content keeps every header we build (List-Unsubscribe, the delivery tag). Provider errors are
classified here, at the boundary, into the three kinds the sender acts on, plus "unknown" for a
request that may have been accepted (a read timeout), which is recorded uncertain, never resent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from worker.transports import mime
from worker.transports.base import FailureKind, OutgoingMessage, SendResult

log = logging.getLogger(__name__)

TRANSIENT_CODES = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
    }
)
ACCOUNT_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
        "IncompleteSignature",
        "NotFoundException",  # e.g. the configuration set does not exist: every send fails
    }
)
PERMANENT_CODES = frozenset({"MessageRejected", "BadRequestException", "InvalidParameterValue"})


def classify(error: ClientError) -> SendResult:
    code = str(error.response.get("Error", {}).get("Code", ""))
    message = str(error.response.get("Error", {}).get("Message", "")) or str(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    reason = f"SES {code or status}: {message}"[:500]
    if code in ACCOUNT_CODES or status in (401, 403):
        return SendResult(failure=FailureKind.ACCOUNT, reason=reason)
    if "daily message quota" in message.lower():
        # Throttling by name, but nothing more will go today: pause instead of burning retries.
        return SendResult(failure=FailureKind.ACCOUNT, reason=reason)
    if code in TRANSIENT_CODES or status == 429 or status >= 500:
        return SendResult(failure=FailureKind.TRANSIENT, reason=reason)
    if code in PERMANENT_CODES or 400 <= status < 500:
        return SendResult(failure=FailureKind.PERMANENT, reason=reason)
    return SendResult(failure=FailureKind.TRANSIENT, reason=reason)


class SesTransport:
    name = "ses"

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        client: Any = None,
    ) -> None:
        # Retries are ours (with bookkeeping and the shared rate limit), not botocore's.
        config = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)
        self.client = client or boto3.client(
            "sesv2", region_name=region, endpoint_url=endpoint_url, config=config
        )
        self.configuration_set = configuration_set

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        results: list[SendResult] = []
        for message in messages:
            result = self._send_one(message)
            results.append(result)
            if result.failure == FailureKind.ACCOUNT:
                # Every further call would fail the same way: stop and hand the rest back.
                blocked = SendResult(failure=FailureKind.ACCOUNT, reason=result.reason)
                results += [blocked] * (len(messages) - len(results))
                break
        return results

    def _send_one(self, message: OutgoingMessage) -> SendResult:
        try:
            data = mime.build(message)
        except (ValueError, UnicodeError) as error:
            return SendResult(
                failure=FailureKind.PERMANENT, reason=f"cannot build message: {error}"
            )
        request: dict[str, Any] = {
            "FromEmailAddress": message.from_address,
            "Destination": {"ToAddresses": [message.to_address]},
            "Content": {"Raw": {"Data": data}},
            "EmailTags": [{"Name": "delivery", "Value": message.tag}],
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = self.client.send_email(**request)
        except ClientError as error:
            return classify(error)
        except (ReadTimeoutError, ConnectionClosedError) as error:
            # The request went out; SES may have accepted it. Resending could deliver it twice.
            return SendResult(failure=FailureKind.UNKNOWN, reason=f"SES did not answer: {error}")
        except (EndpointConnectionError, ConnectTimeoutError) as error:
            return SendResult(failure=FailureKind.TRANSIENT, reason=f"SES unreachable: {error}")
        except NoCredentialsError:
            return SendResult(
                failure=FailureKind.ACCOUNT,
                reason="no AWS credentials found (AWS_ACCESS_KEY_ID/… or an instance role)",
            )
        except BotoCoreError as error:
            return SendResult(failure=FailureKind.TRANSIENT, reason=f"SES call failed: {error}")
        return SendResult(provider_id=str(response["MessageId"]))

    def max_send_rate(self) -> float | None:
        """The account's MaxSendRate (messages per second), or None when it cannot be read."""
        try:
            quota = self.client.get_account()["SendQuota"]
        except (ClientError, BotoCoreError, KeyError) as error:
            log.warning("could not read the SES send quota (%s); set SES_MAX_SEND_RATE", error)
            return None
        return float(quota["MaxSendRate"])
