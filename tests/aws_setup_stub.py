"""A local stand-in for the AWS setup APIs the SES emulator lacks, in front of that emulator.

aws-ses-v2-local implements GetAccount, the template calls and SendEmail/SendBulkEmail only. This
HTTP server answers SES v2 GetEmailIdentity, GetConfigurationSet and
GetConfigurationSetEventDestinations (REST+JSON) and SNS ListSubscriptionsByTopic (query
protocol, XML) from an `AwsSetup` a test arranges, and forwards every other request (GetAccount)
to the emulator. Requests signed with a rejected access key get the answer AWS gives an invalid
key, in the protocol of the service called. boto3 talks to it over real HTTP, as to AWS.
"""

from __future__ import annotations

import http.client
import http.server
import json
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

SNS_NAMESPACE = "http://sns.amazonaws.com/doc/2010-03-31/"
_IDENTITY = re.compile(r"/v2/email/identities/([^/]+)")
_CONFIGURATION_SET = re.compile(r"/v2/email/configuration-sets/([^/]+)")
_EVENT_DESTINATIONS = re.compile(r"/v2/email/configuration-sets/([^/]+)/event-destinations")
_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")
Answer = Callable[[http.server.BaseHTTPRequestHandler], None] | None


@dataclass
class Identity:
    verified: bool = True
    dkim_status: str = "SUCCESS"  # PENDING | SUCCESS | FAILED | TEMPORARY_FAILURE | NOT_STARTED


@dataclass
class Destination:
    name: str
    event_types: list[str]
    topic_arn: str | None = None  # None: a CloudWatch destination, not SNS
    enabled: bool = True


@dataclass
class ConfigurationSet:
    destinations: list[Destination] = field(default_factory=list)
    sending_enabled: bool = True


@dataclass
class Subscription:
    endpoint: str
    protocol: str = "https"
    confirmed: bool = True


@dataclass
class AwsSetup:
    """What the stub answers; a name missing from a dict does not exist (404 / NotFound)."""

    identities: dict[str, Identity] = field(default_factory=dict)
    configuration_sets: dict[str, ConfigurationSet] = field(default_factory=dict)
    topics: dict[str, list[Subscription]] = field(default_factory=dict)  # ARN → subscriptions
    rejected_access_keys: set[str] = field(default_factory=set)
    subscriptions_per_page: int = 100
    calls: list[str] = field(default_factory=list)  # each operation seen, in order


class AwsSetupStub:
    def __init__(self, upstream: str, setup: AwsSetup) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.setup = setup
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stub._handle(self, b"")

            def do_POST(self) -> None:
                stub._handle(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> AwsSetupStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        path = urlsplit(handler.path).path
        form = parse_qs(body.decode(errors="replace")) if handler.command == "POST" else {}
        operation, answer = self._route(handler.command, path, form)
        with self._lock:
            self.setup.calls.append(operation)
        key = _ACCESS_KEY.search(handler.headers.get("Authorization", ""))
        if key and key.group(1) in self.setup.rejected_access_keys:
            if path.startswith("/v2/"):
                _json_error(handler, 403, "UnrecognizedClientException", _INVALID_KEY)
            else:
                _xml_error(handler, 403, "InvalidClientTokenId", _INVALID_KEY)
        elif answer is None:
            _forward(self.upstream, handler, body)
        else:
            answer(handler)

    def _route(self, command: str, path: str, form: dict[str, list[str]]) -> tuple[str, Answer]:
        """(operation name, what answers it: None forwards it to the emulator)."""
        action = form.get("Action", [""])[0]
        if command == "GET" and (match := _IDENTITY.fullmatch(path)):
            return "GetEmailIdentity", lambda h: self._identity(h, unquote(match.group(1)))
        if command == "GET" and (match := _EVENT_DESTINATIONS.fullmatch(path)):
            name = unquote(match.group(1))
            return "GetConfigurationSetEventDestinations", lambda h: self._destinations(h, name)
        if command == "GET" and (match := _CONFIGURATION_SET.fullmatch(path)):
            name = unquote(match.group(1))
            return "GetConfigurationSet", lambda h: self._configuration_set(h, name)
        if action == "ListSubscriptionsByTopic":
            return action, lambda h: self._subscriptions(h, form)
        if command == "GET" and path == "/v2/email/account":
            return "GetAccount", None  # the emulator answers this one
        return action or f"{command} {path}", None

    def _identity(self, handler: http.server.BaseHTTPRequestHandler, name: str) -> None:
        identity = self.setup.identities.get(name)
        if identity is None:
            _json_error(handler, 404, "NotFoundException", f"Email identity {name} does not exist.")
            return
        _json(
            handler,
            {
                "IdentityType": "EMAIL_ADDRESS" if "@" in name else "DOMAIN",
                "FeedbackForwardingStatus": True,
                "VerifiedForSendingStatus": identity.verified,
                "VerificationStatus": "SUCCESS" if identity.verified else "PENDING",
                "DkimAttributes": {
                    "SigningEnabled": True,
                    "Status": identity.dkim_status,
                    "Tokens": ["token1", "token2", "token3"],
                    "SigningAttributesOrigin": "AWS_SES",
                },
                "Policies": {},
                "Tags": [],
            },
        )

    def _configuration_set(self, handler: http.server.BaseHTTPRequestHandler, name: str) -> None:
        found = self.setup.configuration_sets.get(name)
        if found is None:
            _json_error(
                handler, 404, "NotFoundException", f"Configuration set <{name}> does not exist."
            )
            return
        _json(
            handler,
            {
                "ConfigurationSetName": name,
                "SendingOptions": {"SendingEnabled": found.sending_enabled},
                "ReputationOptions": {"ReputationMetricsEnabled": True},
                "Tags": [],
            },
        )

    def _destinations(self, handler: http.server.BaseHTTPRequestHandler, name: str) -> None:
        found = self.setup.configuration_sets.get(name)
        if found is None:
            _json_error(
                handler, 404, "NotFoundException", f"Configuration set <{name}> does not exist."
            )
            return
        destinations = []
        for destination in found.destinations:
            entry: dict[str, Any] = {
                "Name": destination.name,
                "Enabled": destination.enabled,
                "MatchingEventTypes": destination.event_types,
            }
            if destination.topic_arn:
                entry["SnsDestination"] = {"TopicArn": destination.topic_arn}
            else:
                entry["CloudWatchDestination"] = {"DimensionConfigurations": []}
            destinations.append(entry)
        _json(handler, {"EventDestinations": destinations})

    def _subscriptions(
        self, handler: http.server.BaseHTTPRequestHandler, form: dict[str, list[str]]
    ) -> None:
        topic = form.get("TopicArn", [""])[0]
        subscriptions = self.setup.topics.get(topic)
        if subscriptions is None:
            _xml_error(handler, 404, "NotFound", "Topic does not exist")
            return
        start = int(form.get("NextToken", ["0"])[0])
        end = start + self.setup.subscriptions_per_page
        members = "".join(
            "<member>"
            f"<TopicArn>{escape(topic)}</TopicArn>"
            f"<Protocol>{escape(item.protocol)}</Protocol>"
            f"<SubscriptionArn>{escape(_subscription_arn(topic, item))}</SubscriptionArn>"
            "<Owner>123456789012</Owner>"
            f"<Endpoint>{escape(item.endpoint)}</Endpoint>"
            "</member>"
            for item in subscriptions[start:end]
        )
        next_token = f"<NextToken>{end}</NextToken>" if end < len(subscriptions) else ""
        _xml(
            handler,
            200,
            f'<ListSubscriptionsByTopicResponse xmlns="{SNS_NAMESPACE}">'
            f"<ListSubscriptionsByTopicResult><Subscriptions>{members}</Subscriptions>"
            f"{next_token}</ListSubscriptionsByTopicResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</ListSubscriptionsByTopicResponse>",
        )


_INVALID_KEY = "The security token included in the request is invalid."


def _subscription_arn(topic: str, subscription: Subscription) -> str:
    # SNS lists an unconfirmed subscription with this literal in place of its ARN.
    return f"{topic}:{uuid.uuid4()}" if subscription.confirmed else "PendingConfirmation"


def _send(
    handler: http.server.BaseHTTPRequestHandler,
    status: int,
    payload: bytes,
    headers: dict[str, str],
) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _json(handler: http.server.BaseHTTPRequestHandler, data: dict[str, Any]) -> None:
    _send(handler, 200, json.dumps(data).encode(), {"Content-Type": "application/json"})


def _json_error(
    handler: http.server.BaseHTTPRequestHandler, status: int, code: str, message: str
) -> None:
    # REST+JSON services name the error in this header; botocore reads the code from it.
    payload = json.dumps({"message": message}).encode()
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": f"{code}:"}
    _send(handler, status, payload, headers)


def _xml(handler: http.server.BaseHTTPRequestHandler, status: int, document: str) -> None:
    _send(handler, status, document.encode(), {"Content-Type": "text/xml"})


def _xml_error(
    handler: http.server.BaseHTTPRequestHandler, status: int, code: str, message: str
) -> None:
    _xml(
        handler,
        status,
        f'<ErrorResponse xmlns="{SNS_NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>",
    )


def _forward(upstream: str, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
    connection = http.client.HTTPConnection(upstream, timeout=60)
    headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
    connection.request(handler.command, handler.path, body=body or None, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    relayed = {
        name: value
        for name, value in response.getheaders()
        if name.lower() not in ("transfer-encoding", "connection", "content-length")
    }
    _send(handler, response.status, payload, relayed)
    connection.close()
