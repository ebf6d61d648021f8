"""Settings from the environment (and an optional .env file); read through get_settings()."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

TransportName = Literal["outbox", "memory", "ses", "smtp"]
SmtpSecurity = Literal["starttls", "tls", "none"]
LogFormat = Literal["human", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


class Settings(BaseSettings):
    """Every knob the mailer has. Defaults run everything on one machine with no services."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    var_dir: Path = Field(default=Path("var"), alias="VAR_DIR")
    database_url: str | None = Field(default=None, alias="DATABASE_URL")
    redis_url: str | None = Field(default=None, alias="REDIS_URL")
    transport: TransportName = Field(default="outbox", alias="NEWSLETTER_TRANSPORT")
    outbox_dir: Path | None = Field(default=None, alias="OUTBOX_DIR")
    from_address: str = Field(
        default="Weekly AI Tool Verdicts <verdicts@localhost>", alias="FROM_ADDRESS"
    )
    public_base_url: str = Field(default="http://localhost:8000", alias="PUBLIC_BASE_URL")
    list_unsubscribe_mailto: str | None = Field(default=None, alias="LIST_UNSUBSCRIBE_MAILTO")
    secret_key: str | None = Field(default=None, alias="SECRET_KEY")
    postal_address: str = Field(default="", alias="POSTAL_ADDRESS")
    timezone: str = Field(default="UTC", alias="NEWSLETTER_TIMEZONE")
    send_lease_s: int = Field(default=300, alias="SEND_LEASE_S", ge=1)
    max_send_rate: float | None = Field(default=None, alias="SES_MAX_SEND_RATE", gt=0)
    ses_region: str | None = Field(default=None, alias="SES_REGION")
    ses_configuration_set: str | None = Field(default=None, alias="SES_CONFIGURATION_SET")
    ses_endpoint_url: str | None = Field(default=None, alias="SES_ENDPOINT_URL")
    # Another SNS endpoint (a local stub in tests); only `newsletter doctor` calls SNS.
    sns_endpoint_url: str | None = Field(default=None, alias="SNS_ENDPOINT_URL")
    smtp_host: str | None = Field(default=None, alias="SMTP_HOST")
    smtp_port: int = Field(default=587, alias="SMTP_PORT", ge=1, le=65535)
    smtp_username: str | None = Field(default=None, alias="SMTP_USERNAME")
    smtp_password: str | None = Field(default=None, alias="SMTP_PASSWORD")
    smtp_security: SmtpSecurity = Field(default="starttls", alias="SMTP_SECURITY")
    smtp_timeout_s: float = Field(default=30, alias="SMTP_TIMEOUT_S", gt=0)
    # SNS topics whose SES notifications /hooks/ses accepts (comma-separated ARNs).
    sns_topic_arns: str = Field(default="", alias="SNS_TOPIC_ARNS")
    subscribe_limit_per_hour: int = Field(default=10, alias="SUBSCRIBE_LIMIT_PER_HOUR", ge=1)
    log_format: LogFormat = Field(default="human", alias="LOG_FORMAT")
    # Unset: INFO, but WARNING for the `newsletter` command, whose own output says what it did.
    log_level: LogLevel | None = Field(default=None, alias="LOG_LEVEL")
    # When set, /metrics answers only `Authorization: Bearer <token>` (the web app is public).
    metrics_token: str | None = Field(default=None, alias="METRICS_TOKEN")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin)") from None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> str:
        return _one_of(value, get_args(LogFormat), str.lower)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str | None:
        return None if value is None else _one_of(value, get_args(LogLevel), str.upper)

    @field_validator("public_base_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the driver SQLAlchemy should use (psycopg 3 for PostgreSQL)."""
        if not self.database_url:
            return f"sqlite:///{self.var_dir / 'newsletter.db'}"
        url = self.database_url
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def sns_topics(self) -> frozenset[str]:
        return frozenset(arn.strip() for arn in self.sns_topic_arns.split(",") if arn.strip())

    @property
    def is_embedded_db(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def outbox_path(self) -> Path:
        return self.outbox_dir or self.var_dir / "outbox"

    @property
    def unsubscribe_mailto(self) -> str:
        if self.list_unsubscribe_mailto:
            return self.list_unsubscribe_mailto
        domain = self.from_address.rsplit("@", 1)[-1].rstrip(">").strip()
        return f"unsubscribe@{domain}"

    def signing_key(self) -> bytes:
        """SECRET_KEY, or on the embedded setup a key generated once and kept in var/."""
        if self.secret_key:
            return self.secret_key.encode()
        if not self.is_embedded_db:
            raise ConfigError("SECRET_KEY is not set: links in emails cannot be signed")
        path = self.var_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def _one_of(value: object, allowed: tuple[str, ...], case: Callable[[str], str]) -> str:
    """Either spelling (json, JSON) is fine; anything else is refused, naming what is allowed."""
    text = case(str(value).strip())
    if text not in allowed:
        choices = f"{', '.join(allowed[:-1])} or {allowed[-1]}"
        raise ValueError(f"must be {choices}, got {value!r}")
    return text


def setting_problems(error: ValidationError) -> list[str]:
    """One line per setting that did not validate, named by its environment variable."""
    return [
        f"{str(problem['loc'][0]).upper() if problem['loc'] else 'setting'}: {problem['msg']}"
        for problem in error.errors()
    ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
