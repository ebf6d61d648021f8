"""SNS messages signed the way AWS signs them, by a test CA's leaf certificate made here.

The string to sign is built independently of worker.sns (straight from the AWS description), so
the tests check the verifier against the documented format, not against itself.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from worker.sns import SnsUnreachable, Verifier

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:verdicts-ses-events"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425f004aed"
)
NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


@dataclass(frozen=True)
class SigningCert:
    key: rsa.RSAPrivateKey
    pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@cache
def _ca() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("Verdicts Test CA"))
        .issuer_name(_name("Verdicts Test CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=3650))
        .not_valid_after(NOW + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


@cache
def signing_cert(
    *,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
) -> SigningCert:
    """A leaf certificate (RSA 2048) from the test CA; made once per validity window."""
    ca_key, ca_certificate = _ca()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("sns.amazonaws.com"))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(ca_key, hashes.SHA256())
    )
    return SigningCert(key=key, pem=certificate.public_bytes(serialization.Encoding.PEM))


def sign(
    fields: dict[str, str],
    *,
    version: str = "2",
    cert: SigningCert | None = None,
    cert_url: str = CERT_URL,
) -> dict[str, str]:
    """`fields` plus SignatureVersion, Signature and SigningCertURL, as SNS would post them."""
    keys = NOTIFICATION_KEYS if fields["Type"] == "Notification" else CONFIRMATION_KEYS
    text = "".join(f"{key}\n{fields[key]}\n" for key in keys if key in fields)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = (cert or signing_cert()).key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    return {
        **fields,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
        "SigningCertURL": cert_url,
    }


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def notification(
    message: str | dict[str, Any],
    *,
    message_id: str = "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
    topic: str = TOPIC,
    sent_at: datetime = NOW - timedelta(minutes=1),
    subject: str | None = None,
    version: str = "2",
    cert_url: str = CERT_URL,
) -> dict[str, str]:
    fields = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": stamp(sent_at),
        "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x={topic}",
    }
    if subject is not None:
        fields["Subject"] = subject
    return sign(fields, version=version, cert_url=cert_url)


def confirmation(
    *,
    kind: str = "SubscriptionConfirmation",
    topic: str = TOPIC,
    subscribe_url: str = SUBSCRIBE_URL,
    sent_at: datetime = NOW - timedelta(minutes=1),
) -> dict[str, str]:
    fields = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425f004aed",
        "TopicArn": topic,
        "Message": f"You have chosen to subscribe to the topic {topic}.",
        "SubscribeURL": subscribe_url,
        "Timestamp": stamp(sent_at),
    }
    return sign(fields)


@dataclass
class FakeFetcher:
    """Serves the test leaf certificate at CERT_URL and records every URL asked for."""

    pem: bytes = field(default_factory=lambda: signing_cert().pem)
    calls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url != CERT_URL:
            raise SnsUnreachable(f"the fake AWS has nothing at {url}")
        return self.pem


def verifier(
    fetcher: FakeFetcher, *, topics: frozenset[str] = frozenset({TOPIC}), now: datetime = NOW
) -> Verifier:
    return Verifier(topics=topics, fetch_cert=fetcher, clock=lambda: now)


def body(fields: dict[str, str]) -> bytes:
    return json.dumps(fields).encode()
