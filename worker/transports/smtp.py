"""The SMTP transport: each batch goes over one smtplib connection to SMTP_HOST, and every
SMTP error is classified here as transient, permanent (one message) or account-wide."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.utils import parseaddr

from worker.config import SmtpSecurity
from worker.transports import mime
from worker.transports.base import FailureKind, OutgoingMessage, SendResult


class _BatchStopped(Exception):
    """The connection or the account failed: no message still waiting in the batch can go."""

    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.result = SendResult(failure=kind, reason=reason)


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def _reply(error: smtplib.SMTPResponseException) -> str:
    return f"{error.smtp_code} {_text(error.smtp_error)}"


def _is_transient(code: int) -> bool:
    return 400 <= code < 500


class SmtpTransport:
    name = "smtp"

    def __init__(
        self,
        *,
        host: str,
        port: int = 587,
        username: str | None = None,
        password: str | None = None,
        security: SmtpSecurity = "starttls",
        timeout_s: float = 30,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.security = security
        self.timeout_s = timeout_s
        # Tests pass a context that trusts their throwaway certificate; in production the
        # server's certificate is verified against the system's CAs.
        self.ssl_context = ssl_context or ssl.create_default_context()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        if not messages:
            return []
        results: list[SendResult] = []
        try:
            client = self._open()
        except _BatchStopped as stop:
            return [stop.result for _ in messages]
        try:
            for message in messages:
                results.append(self._deliver(client, message))
        except _BatchStopped as stop:
            # Messages already accepted keep their success: reporting them failed would
            # send them twice.
            results += [stop.result for _ in messages[len(results) :]]
        finally:
            _close(client)
        return results

    def _open(self) -> smtplib.SMTP:
        """A connected client, encrypted as SMTP_SECURITY says and logged in if configured."""
        try:
            client = self._connect()
        except (smtplib.SMTPException, OSError) as error:
            raise self._stopped(error) from error
        try:
            self._secure(client)
            self._login(client)
        except BaseException:
            _close(client)
            raise
        return client

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            return smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=self.ssl_context
            )
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)

    def _secure(self, client: smtplib.SMTP) -> None:
        if self.security != "starttls":
            return
        try:
            client.ehlo()
            if not client.has_extn("starttls"):
                # Falling back to clear text would leak every subscriber's address and
                # unsubscribe link, and the SMTP password right after.
                raise _BatchStopped(
                    FailureKind.ACCOUNT,
                    f"SMTP server {self.server} does not offer STARTTLS; refusing to send in "
                    "clear text. Use SMTP_SECURITY=tls for implicit TLS (usually port 465), "
                    "or none only for a trusted local relay",
                )
            client.starttls(context=self.ssl_context)
            client.ehlo()  # the capabilities offered before STARTTLS no longer hold
        except (smtplib.SMTPException, OSError) as error:
            raise self._stopped(error) from error

    def _login(self, client: smtplib.SMTP) -> None:
        if not (self.username and self.password):
            return
        try:
            client.login(self.username, self.password)
        except smtplib.SMTPAuthenticationError as error:
            if _is_transient(error.smtp_code):  # 454: the server cannot check credentials now
                raise self._stopped(error) from error
            raise _BatchStopped(
                FailureKind.ACCOUNT,
                f"SMTP server {self.server} refused the login of SMTP_USERNAME={self.username}: "
                f"{_reply(error)}; check SMTP_USERNAME and SMTP_PASSWORD",
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            raise self._stopped(error) from error

    def _deliver(self, client: smtplib.SMTP, message: OutgoingMessage) -> SendResult:
        try:
            data = mime.build(message)
        except (ValueError, UnicodeError) as error:
            return SendResult(
                failure=FailureKind.PERMANENT, reason=f"cannot build message: {error}"
            )
        sender = parseaddr(message.from_address)[1]
        # After a refused RCPT or DATA smtplib itself sends RSET (or closes on 421), so the
        # next message starts a clean transaction on the same connection.
        try:
            client.sendmail(sender, [message.to_address], data)
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            reason = f"recipient {message.to_address} refused: {code} {_text(text)}"
            return _refused(code, reason)
        except smtplib.SMTPDataError as error:
            return _refused(error.smtp_code, f"message refused: {_reply(error)}")
        except smtplib.SMTPSenderRefused as error:
            if _is_transient(error.smtp_code):
                return _refused(error.smtp_code, f"sender deferred: {_reply(error)}")
            raise _BatchStopped(
                FailureKind.ACCOUNT,
                f"SMTP server {self.server} refuses the sender {sender}: {_reply(error)}; "
                "check FROM_ADDRESS and the relay's permissions",
            ) from error
        except (smtplib.SMTPException, OSError) as error:
            raise self._stopped(error) from error
        return SendResult(provider_id=message.message_id)

    def _stopped(self, error: smtplib.SMTPException | OSError) -> _BatchStopped:
        """Classify an error that leaves the connection unusable for the rest of the batch."""
        if isinstance(error, ssl.SSLCertVerificationError):
            # A certificate does not start verifying by itself: an operator must act.
            return _BatchStopped(
                FailureKind.ACCOUNT,
                f"TLS certificate of SMTP server {self.server} failed verification: "
                f"{error.verify_message}",
            )
        if isinstance(error, smtplib.SMTPResponseException):
            kind = FailureKind.TRANSIENT if _is_transient(error.smtp_code) else FailureKind.ACCOUNT
            return _BatchStopped(kind, f"SMTP server {self.server} answered {_reply(error)}")
        if isinstance(error, smtplib.SMTPServerDisconnected):
            return _BatchStopped(
                FailureKind.TRANSIENT, f"SMTP server {self.server} disconnected: {error}"
            )
        if isinstance(error, smtplib.SMTPException):
            # What is left is the server lacking something we need, such as AUTH.
            return _BatchStopped(FailureKind.ACCOUNT, f"SMTP server {self.server}: {error}")
        return _BatchStopped(
            FailureKind.TRANSIENT, f"cannot talk to SMTP server {self.server}: {error}"
        )


def _refused(code: int, reason: str) -> SendResult:
    """One message refused: a 4xx may pass later, a 5xx never will."""
    kind = FailureKind.TRANSIENT if _is_transient(code) else FailureKind.PERMANENT
    return SendResult(failure=kind, reason=reason)


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        # The server may already have hung up; what was sent stands either way.
        client.close()
