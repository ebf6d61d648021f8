"""Checks of the settings every sent email relies on: https links, the signing key, the footer."""

from __future__ import annotations

from worker.doctor.base import CheckResult, Probe, failed, passed

MIN_SECRET_CHARS = 32
# Fragments of the values people paste from examples and forget; a real key holds none of them.
PLACEHOLDER_SECRETS = (
    "changeme",
    "change-me",
    "change_me",
    "placeholder",
    "example",
    "replace",
    "your-secret",
    "secret-key",
    "secret_key",
    "insecure",
)


def check_public_base_url(probe: Probe) -> CheckResult:
    url = probe.settings.public_base_url
    if not url.startswith("https://"):
        return failed(
            "public-base-url",
            f"{url} is not https: links in emails and SNS notifications would travel in clear",
            "set PUBLIC_BASE_URL to the https:// address the web process is reached at",
        )
    return passed("public-base-url", url)


def check_secret_key(probe: Probe) -> CheckResult:
    key = probe.settings.secret_key
    fix = "set SECRET_KEY=$(openssl rand -hex 32) on every host, and keep it"
    if not key:
        return failed(
            "secret-key",
            "SECRET_KEY is not set (the embedded setup's generated var/secret.key is not shared "
            "between hosts)",
            fix,
        )
    if len(key) < MIN_SECRET_CHARS:
        return failed(
            "secret-key", f"SECRET_KEY is {len(key)} characters, under {MIN_SECRET_CHARS}", fix
        )
    lowered = key.lower()
    if any(word in lowered for word in PLACEHOLDER_SECRETS) or len(set(key)) < 8:
        return failed("secret-key", "SECRET_KEY looks like a placeholder, not a random key", fix)
    return passed("secret-key", f"set, {len(key)} characters")


def check_postal_address(probe: Probe) -> CheckResult:
    address = probe.settings.postal_address.strip()
    if not address:
        return failed(
            "postal-address",
            "POSTAL_ADDRESS is empty: every footer must carry one (anti-spam law)",
            "set POSTAL_ADDRESS to the postal address printed in every email",
        )
    return passed("postal-address", address)
