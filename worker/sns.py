"""Amazon SNS messages posted to us over HTTPS: parsed, then checked or refused.

A message is accepted only from an allowed topic, when it is fresh, and when its signature
verifies against a certificate served by an SNS host (signature versions 1 and 2).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from worker.models import utcnow

log = logging.getLogger(__name__)

MAX_AGE = timedelta(hours=1)
MAX_CLOCK_SKEW = timedelta(minutes=5)  # a message stamped this far ahead of our clock still counts
FETCH_TIMEOUT_S = 5.0
MAX_CERT_BYTES = 64 * 1024
MAX_CACHED_CERTS = 32
# sns.<region>.amazonaws.com with a real region's shape (us-east-1, us-gov-west-1,
# cn-north-1, ap-southeast-2…): a looser pattern would also match S3 bucket hosts such as
# sns.s3.amazonaws.com, which anyone owning a bucket named "sns" can serve files from.
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]+\.amazonaws\.com(\.cn)?")

CertFetcher = Callable[[str], bytes]
"""Fetch the PEM at an (already checked) URL; raise SnsUnreachable when it cannot be had."""
Visitor = Callable[[str], None]
"""GET an (already checked) SubscribeURL; raise SnsUnreachable when it cannot be reached."""
Clock = Callable[[], datetime]


class SnsError(Exception):
    """Base of everything this module refuses; `reason` is short and safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SnsMalformed(SnsError):
    """The body is not an SNS message at all (not JSON, a field missing or of the wrong type)."""


class SnsRejected(SnsError):
    """A well-formed message we will not act on: wrong topic, stale, or not signed by SNS."""


class SnsUnreachable(SnsError):
    """AWS could not be reached (certificate fetch, subscription confirmation): worth a retry."""


class MessageType(StrEnum):
    NOTIFICATION = "Notification"
    SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
    UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"


# The fields signed for each type, in the order AWS concatenates them.
_SIGNED_FIELDS: dict[MessageType, tuple[str, ...]] = {
    MessageType.NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    MessageType.SUBSCRIPTION_CONFIRMATION: (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED_FIELDS[MessageType.UNSUBSCRIBE_CONFIRMATION] = _SIGNED_FIELDS[
    MessageType.SUBSCRIPTION_CONFIRMATION
]
_ENVELOPE_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL")
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


@dataclass(frozen=True)
class SnsMessage:
    type: MessageType
    message_id: str
    topic_arn: str
    message: str
    timestamp: datetime
    signature_version: str
    signature: str  # base64, as sent
    signing_cert_url: str
    subscribe_url: str | None
    signed_text: bytes  # the exact bytes the signature covers


def parse_message(body: bytes) -> SnsMessage:
    """The SNS message in a request body, or SnsMalformed naming what is missing."""
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise SnsMalformed("body is not JSON") from None
    if not isinstance(fields, dict):
        raise SnsMalformed("body is not a JSON object")
    try:
        kind = MessageType(_text(fields, "Type"))
    except ValueError:
        raise SnsMalformed(f"unknown Type {fields['Type'][:40]!r}") from None
    names = [name for name in _SIGNED_FIELDS[kind] if name != "Subject"]
    values = {name: _text(fields, name) for name in (*names, *_ENVELOPE_FIELDS)}
    subject = fields.get("Subject")
    if kind == MessageType.NOTIFICATION and subject is not None:
        if not isinstance(subject, str):
            raise SnsMalformed("Subject must be a string")
        values["Subject"] = subject
    signed = "".join(f"{name}\n{values[name]}\n" for name in _SIGNED_FIELDS[kind] if name in values)
    return SnsMessage(
        type=kind,
        message_id=values["MessageId"],
        topic_arn=values["TopicArn"],
        message=values["Message"],
        timestamp=_timestamp(values["Timestamp"]),
        signature_version=values["SignatureVersion"],
        signature=values["Signature"],
        signing_cert_url=values["SigningCertURL"],
        subscribe_url=values.get("SubscribeURL"),
        signed_text=signed.encode(),
    )


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    if value is None:
        raise SnsMalformed(f"field {name} is missing")
    if not isinstance(value, str):
        raise SnsMalformed(f"field {name} must be a string")
    return value


def _timestamp(text: str) -> datetime:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise SnsMalformed(f"Timestamp {text[:40]!r} is not ISO 8601") from None
    if stamp.tzinfo is None:
        raise SnsMalformed("Timestamp has no time zone")
    return stamp


def check_sns_url(url: str, *, what: str, pem: bool = False) -> None:
    """SnsRejected unless `url` is https://sns.<region>.amazonaws.com[.cn]/… (optionally a .pem).

    The whole netloc must match, so userinfo, odd ports and look-alike hosts
    (sns.us-east-1.amazonaws.com.evil.com) are all refused before anything is fetched.
    """
    if not (url.isascii() and url.isprintable()) or " " in url or "\\" in url:
        # urlsplit drops some of these silently; the HTTP client might read them otherwise.
        raise SnsRejected(f"{what} holds spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        raise SnsRejected(f"{what} is not an https URL on an SNS host") from None
    netloc = parts.netloc.lower().removesuffix(":443")
    if parts.scheme != "https" or not _SNS_HOST.fullmatch(netloc):
        raise SnsRejected(f"{what} is not an https URL on an SNS host")
    if pem and not parts.path.endswith(".pem"):
        raise SnsRejected(f"{what} does not name a .pem certificate")


class Verifier:
    """Checks messages for one set of allowed topics; caches signing certificates by URL."""

    def __init__(
        self,
        *,
        topics: frozenset[str],
        fetch_cert: CertFetcher | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.topics = topics
        self._fetch_cert = fetch_cert or fetch_https
        self._clock = clock
        self._certs: dict[str, x509.Certificate] = {}
        # Held while fetching, so a burst of messages naming a new certificate fetches it once.
        self._lock = threading.Lock()

    def check(self, body: bytes) -> SnsMessage:
        """The parsed message if it may be acted on; SnsMalformed, SnsRejected or SnsUnreachable."""
        message = parse_message(body)
        self.verify(message)
        return message

    def verify(self, message: SnsMessage) -> None:
        # Cheap checks first: nothing is fetched for a topic or a URL we would refuse anyway.
        if message.topic_arn not in self.topics:
            raise SnsRejected("topic is not allowed")
        now = self._clock()
        if message.timestamp < now - MAX_AGE:
            raise SnsRejected("message is older than one hour")
        if message.timestamp > now + MAX_CLOCK_SKEW:
            raise SnsRejected("message is dated in the future")
        algorithm = _HASHES.get(message.signature_version)
        if algorithm is None:
            raise SnsRejected(f"SignatureVersion {message.signature_version[:10]!r} is unsupported")
        check_sns_url(message.signing_cert_url, what="SigningCertURL", pem=True)
        try:
            signature = base64.b64decode(message.signature, validate=True)
        except (ValueError, binascii.Error):
            raise SnsRejected("Signature is not base64") from None
        certificate = self._certificate(message.signing_cert_url)
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsRejected("signing certificate is not valid now")
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsRejected("signing certificate does not hold an RSA key")
        try:
            key.verify(signature, message.signed_text, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SnsRejected("signature does not match") from None

    def _certificate(self, url: str) -> x509.Certificate:
        cached = self._certs.get(url)  # no lock: a slow fetch must not hold up cached URLs
        if cached is not None:
            return cached
        with self._lock:
            cached = self._certs.get(url)  # fetched by another request while this one waited
            if cached is not None:
                return cached
            pem = self._fetch_cert(url)
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise SnsRejected("SigningCertURL did not return a PEM certificate") from None
            if len(self._certs) >= MAX_CACHED_CERTS:  # AWS rotates rarely: drop the oldest
                del self._certs[next(iter(self._certs))]
            self._certs[url] = certificate
            return certificate


def confirm_subscription(message: SnsMessage, *, visit: Visitor) -> None:
    """Confirm a verified SubscriptionConfirmation by visiting its SubscribeURL.

    The URL is signed, but it is still checked: we only ever make a GET to an SNS host.
    """
    if message.type != MessageType.SUBSCRIPTION_CONFIRMATION or message.subscribe_url is None:
        raise ValueError(f"a {message.type} message confirms nothing")
    check_sns_url(message.subscribe_url, what="SubscribeURL")
    visit(message.subscribe_url)
    log.info("confirmed the SNS subscription to %s", message.topic_arn)


def fetch_https(url: str) -> bytes:
    """The default CertFetcher: a TLS-verified GET, no redirects, at most MAX_CERT_BYTES."""
    try:
        with httpx.stream("GET", url, timeout=FETCH_TIMEOUT_S) as response:
            response.raise_for_status()
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CERT_BYTES:
                    raise SnsRejected(f"SigningCertURL returned more than {MAX_CERT_BYTES} bytes")
            return bytes(body)
    except httpx.HTTPError as error:
        raise SnsUnreachable(f"signing certificate could not be fetched: {error}") from None


def visit_https(url: str) -> None:
    """The default Visitor: a TLS-verified GET of a SubscribeURL (SNS answers with XML)."""
    try:
        httpx.get(url, timeout=FETCH_TIMEOUT_S).raise_for_status()
    except httpx.HTTPError as error:
        raise SnsUnreachable(f"SubscribeURL could not be visited: {error}") from None
