"""The SMTP transport against a real SMTP server (aiosmtpd) listening on 127.0.0.1.

The server records what arrives and answers as each test scripts it, so these read as what a
relay sees: the exact message bytes, one connection a batch, and which refusals stop what.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.helpers import parse
from worker.config import Settings
from worker.errors import ConfigError
from worker.transports import make_transport
from worker.transports.base import FailureKind, OutgoingMessage
from worker.transports.mime import build
from worker.transports.smtp import SmtpTransport

SENDER = "verdicts@example.org"
LIST_UNSUBSCRIBE = (
    "<https://verdicts.example.org/unsubscribe/abc.def>, "
    "<mailto:unsubscribe@example.org?subject=unsubscribe%20abc.def>"
)


def outgoing(to_address: str, **changes: Any) -> OutgoingMessage:
    local = to_address.split("@")[0]
    fields: dict[str, Any] = {
        "from_address": f"Weekly AI Tool Verdicts <{SENDER}>",
        "to_address": to_address,
        "to_name": local.title(),
        "subject": "Claude 4 API vs Code Llama 4 — ship or skip?",
        "html": f"<p>Hello {local}</p>\n",
        "text": f"Hello {local}\n",
        "message_id": f"<e1-{local}.0123456789abcdef@example.org>",
        "tag": f"e1-{local}",
        "headers": {
            "List-Unsubscribe": LIST_UNSUBSCRIBE,
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


def without_date(data: bytes) -> bytes:
    """The message with its Date line dropped: the one line that differs between two builds."""
    return b"\r\n".join(line for line in data.split(b"\r\n") if not line.startswith(b"Date: "))


# The local SMTP server


@dataclass
class Arrived:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    session: Session
    encrypted: bool


def is_encrypted(server: SMTP) -> bool:
    """Whether the connection runs over TLS, begun by STARTTLS or from the first byte."""
    return (
        server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
    )


@dataclass
class Relay:
    """The server's handler: keeps what arrives and answers some recipients as scripted."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)  # address -> reply to RCPT
    data_replies: dict[str, str] = field(default_factory=dict)  # address -> reply to DATA
    arrived: list[Arrived] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)  # one per connection that sent MAIL
    resets: int = 0
    quits: int = 0

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not any(seen is session for seen in self.sessions):
            self.sessions.append(session)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = self.data_replies.get(envelope.rcpt_tos[0])
        if scripted:
            return scripted
        assert envelope.mail_from is not None and envelope.original_content is not None
        self.arrived.append(
            Arrived(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=envelope.original_content,
                session=session,
                encrypted=is_encrypted(server),
            )
        )
        return "250 Message accepted"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.resets += 1
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quits += 1
        return "221 Bye"


@dataclass
class Server:
    relay: Relay
    port: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


StartServer = Callable[..., Server]


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts an SMTP server on a free port; keyword arguments go to aiosmtpd's Controller."""
    controllers: list[Controller] = []

    def start(**options: Any) -> Server:
        relay = Relay()
        port = free_port()
        # A fixed server_hostname spares the reverse DNS lookup aiosmtpd would make per server.
        controller = Controller(
            relay, hostname="127.0.0.1", port=port, server_hostname="mx.test", **options
        )
        controller.start()
        controllers.append(controller)
        return Server(relay, port)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def plain(start_server: StartServer) -> Server:
    return start_server()


def transport(server: Server | int, **changes: Any) -> SmtpTransport:
    port = server if isinstance(server, int) else server.port
    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "security": "none"}
    options["timeout_s"] = 2
    options.update(changes)
    return SmtpTransport(**options)


# TLS: a throwaway self-signed certificate for 127.0.0.1


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is not installed: cannot make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusting(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A client context that trusts the test certificate and still checks the host name."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def check_credentials(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    good = isinstance(auth_data, LoginPassword) and auth_data == (b"mailer", b"s3cret")
    return AuthResult(success=good, handled=False)  # unhandled: aiosmtpd answers 535 itself


AUTH_REQUIRED = {
    "authenticator": check_credentials,
    "auth_required": True,
    "auth_require_tls": False,  # the test server speaks plain text; never do this for real
}
no_tls_auth_warning = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


# What arrives


def test_each_message_arrives_as_built_with_its_envelope(plain: Server) -> None:
    messages = [outgoing("ana@example.com"), outgoing("bo@example.com", to_name="Bö Ñ")]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [None, None]
    assert [result.provider_id for result in results] == [m.message_id for m in messages]
    arrived = plain.relay.arrived
    assert [(a.mail_from, a.rcpt_tos) for a in arrived] == [
        (SENDER, ["ana@example.com"]),
        (SENDER, ["bo@example.com"]),
    ]
    for message, received in zip(messages, arrived, strict=True):
        assert without_date(received.content) == without_date(build(message))


def test_arrived_message_has_subject_to_list_unsubscribe_and_both_parts(plain: Server) -> None:
    message = outgoing("zoe@example.com", to_name="Zoë Müller", text="Hi Zoë\n", html="<p>Zoë</p>")

    transport(plain).send([message])

    parsed = parse(plain.relay.arrived[0].content)
    assert parsed["Subject"] == message.subject
    (to,) = parsed["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Zoë Müller", "zoe@example.com")
    assert parsed["Message-ID"] == message.message_id
    assert str(parsed["List-Unsubscribe"]) == LIST_UNSUBSCRIBE
    assert parsed.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    plain_part, html_part = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert isinstance(plain_part, EmailMessage) and isinstance(html_part, EmailMessage)
    assert plain_part.get_content() == "Hi Zoë\r\n"
    assert html_part.get_content() == "<p>Zoë</p>"
    assert datetime.now(UTC) - parsed["Date"].datetime < timedelta(minutes=1)


def test_a_batch_goes_over_one_connection_closed_with_quit(plain: Server) -> None:
    messages = [outgoing(f"reader{n}@example.com") for n in range(5)]

    results = transport(plain).send(messages)

    assert all(result.ok for result in results)
    assert len(plain.relay.arrived) == 5
    assert len(plain.relay.sessions) == 1
    assert plain.relay.quits == 1


def test_empty_batch_opens_no_connection() -> None:
    assert transport(free_port()).send([]) == []


def test_security_none_sends_in_clear_to_a_plain_relay(plain: Server) -> None:
    (result,) = transport(plain, security="none").send([outgoing("ana@example.com")])
    assert result.ok
    assert [a.encrypted for a in plain.relay.arrived] == [False]


# Refusals of one message


def test_recipient_refused_with_550_fails_alone_and_the_rest_are_delivered(plain: Server) -> None:
    plain.relay.rcpt_replies["gone@example.com"] = "550 5.1.1 No such user"
    messages = [outgoing(f"{name}@example.com") for name in ("ana", "gone", "bo")]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [None, FailureKind.PERMANENT, None]
    assert "gone@example.com" in results[1].reason and "550" in results[1].reason
    assert [a.rcpt_tos for a in plain.relay.arrived] == [["ana@example.com"], ["bo@example.com"]]
    assert len(plain.relay.sessions) == 1  # the rest went on the same connection
    assert plain.relay.resets >= 1  # after a reset of the refused transaction


def test_recipient_deferred_with_451_is_transient_and_the_rest_are_delivered(
    plain: Server,
) -> None:
    plain.relay.rcpt_replies["busy@example.com"] = "451 4.3.0 Try again later"
    messages = [outgoing("busy@example.com"), outgoing("ana@example.com")]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [FailureKind.TRANSIENT, None]
    assert "451" in results[0].reason
    assert [a.rcpt_tos for a in plain.relay.arrived] == [["ana@example.com"]]


def test_message_refused_at_data_with_554_fails_alone(plain: Server) -> None:
    plain.relay.data_replies["ana@example.com"] = "554 5.6.0 Message content rejected"
    messages = [outgoing("ana@example.com"), outgoing("bo@example.com")]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [FailureKind.PERMANENT, None]
    assert "554" in results[0].reason
    assert [a.rcpt_tos for a in plain.relay.arrived] == [["bo@example.com"]]
    assert len(plain.relay.sessions) == 1


def test_unbuildable_message_fails_alone_and_permanently(plain: Server) -> None:
    messages = [
        outgoing("ana@example.com", to_name="Ana\r\nBcc: victim@example.net"),
        outgoing("bo@example.com"),
    ]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [FailureKind.PERMANENT, None]
    assert "cannot build" in results[0].reason
    assert [a.rcpt_tos for a in plain.relay.arrived] == [["bo@example.com"]]


# Failures of the connection


def test_nothing_listening_is_transient_for_all() -> None:
    results = transport(free_port()).send([outgoing("ana@example.com"), outgoing("bo@example.com")])
    assert [result.failure for result in results] == [FailureKind.TRANSIENT] * 2
    assert all("127.0.0.1" in result.reason for result in results)


def test_server_that_never_greets_times_out_as_transient() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel accepts the connection; nobody ever says 220

        results = transport(silent.getsockname()[1], timeout_s=0.2).send(
            [outgoing("ana@example.com")]
        )

    assert [result.failure for result in results] == [FailureKind.TRANSIENT]


def test_server_hanging_up_mid_batch_keeps_what_was_sent_and_defers_the_rest(
    plain: Server,
) -> None:
    plain.relay.rcpt_replies["bo@example.com"] = "421 4.3.2 Shutting down"
    messages = [outgoing(f"{name}@example.com") for name in ("ana", "bo", "cy")]

    results = transport(plain).send(messages)

    assert [result.failure for result in results] == [
        None,
        FailureKind.TRANSIENT,
        FailureKind.TRANSIENT,
    ]
    assert [a.rcpt_tos for a in plain.relay.arrived] == [["ana@example.com"]]


# Security


def test_starttls_required_but_not_offered_sends_nothing_and_blocks_the_account(
    plain: Server,
) -> None:
    messages = [outgoing("ana@example.com"), outgoing("bo@example.com")]

    results = transport(plain, security="starttls").send(messages)

    assert [result.failure for result in results] == [FailureKind.ACCOUNT] * 2
    assert "STARTTLS" in results[0].reason and "clear text" in results[0].reason
    assert plain.relay.arrived == [] and plain.relay.sessions == []


def test_starttls_encrypts_before_the_first_message(
    start_server: StartServer, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls, require_starttls=True)

    results = transport(server, security="starttls", ssl_context=trusting).send(
        [outgoing("ana@example.com"), outgoing("bo@example.com")]
    )

    assert all(result.ok for result in results)
    assert [a.encrypted for a in server.relay.arrived] == [True, True]


def test_implicit_tls_delivers(
    start_server: StartServer, server_tls: ssl.SSLContext, trusting: ssl.SSLContext
) -> None:
    server = start_server(ssl_context=server_tls)

    (result,) = transport(server, security="tls", ssl_context=trusting).send(
        [outgoing("ana@example.com")]
    )

    assert result.ok
    assert [a.encrypted for a in server.relay.arrived] == [True]


def test_untrusted_certificate_sends_nothing_and_blocks_the_account(
    start_server: StartServer, server_tls: ssl.SSLContext
) -> None:
    server = start_server(tls_context=server_tls)

    (result,) = transport(server, security="starttls").send([outgoing("ana@example.com")])

    assert result.failure is FailureKind.ACCOUNT
    assert "certificate" in result.reason
    assert server.relay.arrived == []


# Authentication


@no_tls_auth_warning
def test_right_credentials_deliver(start_server: StartServer) -> None:
    server = start_server(**AUTH_REQUIRED)

    (result,) = transport(server, username="mailer", password="s3cret").send(
        [outgoing("ana@example.com")]
    )

    assert result.ok
    assert len(server.relay.arrived) == 1


@no_tls_auth_warning
def test_wrong_credentials_send_nothing_and_block_the_account(start_server: StartServer) -> None:
    server = start_server(**AUTH_REQUIRED)
    messages = [outgoing("ana@example.com"), outgoing("bo@example.com")]

    results = transport(server, username="mailer", password="wrong").send(messages)

    assert [result.failure for result in results] == [FailureKind.ACCOUNT] * 2
    assert "SMTP_USERNAME=mailer" in results[0].reason and "wrong" not in results[0].reason
    assert server.relay.arrived == []


@no_tls_auth_warning
def test_no_credentials_where_auth_is_required_blocks_the_account(
    start_server: StartServer,
) -> None:
    server = start_server(**AUTH_REQUIRED)

    results = transport(server).send([outgoing("ana@example.com"), outgoing("bo@example.com")])

    assert [result.failure for result in results] == [FailureKind.ACCOUNT] * 2
    assert "530" in results[0].reason
    assert server.relay.arrived == []


# Settings


def test_smtp_transport_without_smtp_host_is_a_config_error() -> None:
    settings = Settings(_env_file=None, NEWSLETTER_TRANSPORT="smtp")
    with pytest.raises(ConfigError, match="SMTP_HOST"):
        make_transport(settings)


def test_smtp_transport_defaults_to_port_587_with_starttls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NEWSLETTER_TRANSPORT", "smtp")
    monkeypatch.setenv("SMTP_HOST", "smtp.example.org")

    made = make_transport(Settings(_env_file=None))

    assert isinstance(made, SmtpTransport)
    assert (made.host, made.port, made.security, made.timeout_s) == (
        "smtp.example.org",
        587,
        "starttls",
        30,
    )
    assert (made.username, made.password) == (None, None)
