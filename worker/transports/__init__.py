"""Transports: where a finished message goes (outbox files, SES, SMTP; memory for tests)."""

from __future__ import annotations

from worker.config import Settings
from worker.errors import ConfigError
from worker.transports.base import Transport
from worker.transports.memory import MemoryTransport
from worker.transports.outbox import OutboxTransport
from worker.transports.smtp import SmtpTransport


def make_transport(settings: Settings) -> Transport:
    if settings.transport == "outbox":
        return OutboxTransport(settings.outbox_path)
    if settings.transport == "memory":
        return MemoryTransport()
    if settings.transport == "smtp":
        if not settings.smtp_host:
            raise ConfigError(
                "SMTP_HOST is not set: NEWSLETTER_TRANSPORT=smtp needs the relay's host name"
            )
        return SmtpTransport(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            security=settings.smtp_security,
            timeout_s=settings.smtp_timeout_s,
        )
    if not settings.ses_region:
        raise ConfigError("SES_REGION is not set: NEWSLETTER_TRANSPORT=ses needs the AWS region")
    from worker.transports.ses import SesTransport  # boto3 loads only where SES is used

    return SesTransport(
        region=settings.ses_region,
        endpoint_url=settings.ses_endpoint_url,
        configuration_set=settings.ses_configuration_set,
    )
