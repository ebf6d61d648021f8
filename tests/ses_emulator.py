"""The local SES v2 emulator (npm aws-ses-v2-local, installed by `make test`) and a fault proxy.

The proxy sits between boto3 and the emulator and answers a share of SendEmail calls itself with
the errors SES gives (throttling, server errors, account-level refusals, silence), so the real
boto3 path meets them over real HTTP.
"""

from __future__ import annotations

import base64
import email.parser
import http.client
import http.server
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EMULATOR_CLI = REPO / "tools/ses-emulator/node_modules/aws-ses-v2-local/dist/cli.js"
SEND_PATH = "/v2/email/outbound-emails"
ACCOUNT = {
    "DedicatedIpAutoWarmupEnabled": False,
    "Details": {
        "AdditionalContactEmailAddresses": [],
        "ContactLanguage": "EN",
        "MailType": "MARKETING",
        "ReviewDetails": {"CaseId": "none", "Status": "GRANTED"},
        "UseCaseDescription": "weekly newsletter",
        "WebsiteURL": "https://verdicts.example.org",
    },
    "EnforcementStatus": "HEALTHY",
    "ProductionAccessEnabled": True,
    "SendingEnabled": True,
    "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0, "SentLast24Hours": 0.0},
    "SuppressionAttributes": {"SuppressedReasons": ["BOUNCE", "COMPLAINT"]},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_emulator(*, account: Mapping[str, Any] = ACCOUNT) -> Iterator[str]:
    """Start the emulator on a free port, answering GetAccount with `account` (a sandbox one,
    say); raises RuntimeError when it cannot."""
    if not EMULATOR_CLI.exists():
        raise RuntimeError(f"{EMULATOR_CLI} is missing: run `make ses-emulator`")
    port = free_port()
    process = subprocess.Popen(
        ["node", str(EMULATOR_CLI), "--host", "127.0.0.1", "--port", str(port)],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "AWS_SES_ACCOUNT": json.dumps(account)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/health-check", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    raise RuntimeError(f"the SES emulator did not start: {stderr[-500:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()


def clear(url: str) -> None:
    request = urllib.request.Request(f"{url}/clear-store", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def stored(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/store", timeout=60) as response:
        emails: list[dict[str, Any]] = json.load(response)["emails"]
    return emails


@dataclass(frozen=True)
class Accepted:
    message_id: str
    recipient: str
    delivery_header: str  # X-Verdicts-Delivery


@dataclass
class Faults:
    """What the proxy does to SendEmail calls; everything else passes straight through."""

    throttle_share: float = 0.0
    server_error_share: float = 0.0
    account_error: str | None = None  # e.g. "SendingPausedException"
    reject_addresses: set[str] = field(default_factory=set)
    silent_s: float = 0.0  # hold every send this long before answering (read timeouts)
    sink: bool = False  # accept sends here without the emulator (for throughput figures)
    seed: int = 7
    calls: int = 0
    injected: int = 0
    call_times: list[float] = field(default_factory=list)  # time.monotonic() of each SendEmail
    # Each send SES accepted, as SES would later report it in a delivery event, whether or not
    # the caller saw the answer.
    accepted: list[Accepted] = field(default_factory=list)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller killed mid-request (the fault suite's kill -9) is expected, not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.faults = faults
        self._random = random.Random(faults.seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._fault_for(self.path, body)
                if fault is None and proxy.faults.sink and self.path.startswith(SEND_PATH):
                    proxy._accept(self, body)
                elif fault is None:
                    proxy._forward(self, body)
                else:
                    status, code, message = fault
                    payload = json.dumps({"message": message}).encode()
                    try:
                        self.send_response(status)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("x-amzn-ErrorType", f"{code}:")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the caller timed out first, as the test meant it to

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fault_for(self, path: str, body: bytes) -> tuple[int, str, str] | None:
        if not path.startswith(SEND_PATH):
            return None
        faults = self.faults
        with self._lock:
            faults.calls += 1
            faults.call_times.append(time.monotonic())
            roll = self._random.random()
        fault: tuple[int, str, str] | None = None
        if faults.silent_s:  # never forwarded: the caller gives up before any answer
            time.sleep(faults.silent_s)
            fault = (500, "InternalFailure", "too late")
        elif faults.account_error:
            fault = (400, faults.account_error, "Sending is paused for this account.")
        elif roll < faults.throttle_share:
            fault = (429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        elif roll < faults.throttle_share + faults.server_error_share:
            fault = (500, "InternalFailure", "The request processing has failed.")
        elif faults.reject_addresses:
            destination = json.loads(body).get("Destination", {}).get("ToAddresses", [])
            if set(destination) & faults.reject_addresses:
                fault = (400, "MessageRejected", "Email address is not verified.")
        if fault is not None:
            with self._lock:
                faults.injected += 1
        return fault

    def _accept(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        message_id = f"sink-{uuid.uuid4().hex}"
        with self._lock:
            self.faults.accepted.append(_accepted(message_id, body))
        payload = json.dumps({"MessageId": message_id}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        connection = http.client.HTTPConnection(self.upstream, timeout=60)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        connection.request(handler.command, handler.path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        if handler.path.startswith(SEND_PATH) and response.status == 200:
            accepted = _accepted(json.loads(payload)["MessageId"], body)
            with self._lock:
                self.faults.accepted.append(accepted)
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(name, value)
        try:
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the caller died waiting (a killed worker): SES has the message all the same
        connection.close()


def _accepted(message_id: str, body: bytes) -> Accepted:
    raw = base64.b64decode(json.loads(body)["Content"]["Raw"]["Data"])
    headers = email.parser.BytesHeaderParser().parsebytes(raw)
    return Accepted(
        message_id=message_id,
        recipient=parseaddr(str(headers.get("To", "")))[1],
        delivery_header=str(headers.get("X-Verdicts-Delivery", "")),
    )
