"""What every check shares: the result type, how a check says "skipped", and the Probe."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from worker.config import Settings

CONNECT_TIMEOUT_S = 5  # a doctor that hangs on a black-holed host helps nobody


@dataclass(frozen=True)
class CheckResult:
    """One line of the report. `fix` is one line, set whenever `ok` is false."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False  # not run: an input it needs failed (`fix` names that check)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "skipped": self.skipped,
        }


def passed(name: str, detail: str) -> CheckResult:
    return CheckResult(name=name, ok=True, detail=detail)


def failed(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name=name, ok=False, detail=detail, fix=fix)


class Skipped(Exception):
    """Raised inside a check when what it needs could not be had; reported, never shown raw."""

    def __init__(self, because: str, fix: str) -> None:
        super().__init__(because)
        self.because = because
        self.fix = fix


class CheckFailed(Exception):
    """Raised inside a check for a failure whose detail and fix were decided lower down."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fix = fix


class RedisLike(Protocol):
    def info(self, section: str) -> Mapping[str, Any]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Clients:
    """How the checks reach each service. Factories, so that building a client (from a malformed
    DATABASE_URL, say) fails inside the check that needs it, not before any check runs."""

    engine: Callable[[Settings], Engine]
    redis: Callable[[str], RedisLike]
    ses: Callable[[Settings], Any]  # a boto3 `sesv2` client
    sns: Callable[[Settings, str], Any]  # a boto3 `sns` client for a region


@dataclass
class Probe:
    """The settings and clients every check reads. Each answer is fetched once, so checks that
    read the same answer (GetAccount, say) stay separate functions."""

    settings: Settings
    clients: Clients
    memo: dict[tuple[Any, ...], tuple[bool, Any]] = field(default_factory=dict)
    # Service → why no further call to it is worth making (credentials refused, unreachable).
    blocked: dict[str, str] = field(default_factory=dict)
    _engine: Engine | None = None

    def once(self, key: tuple[Any, ...], fetch: Callable[[], Any]) -> Any:
        """fetch() the first time; afterwards its answer again, or the exception it raised."""
        if key not in self.memo:
            try:
                self.memo[key] = (True, fetch())
            except Exception as error:
                self.memo[key] = (False, error)
        fetched, value = self.memo[key]
        if not fetched:
            raise value
        return value

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self.clients.engine(self.settings)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


Check = Callable[[Probe], CheckResult]


def run_one(name: str, check: Check, probe: Probe) -> CheckResult:
    try:
        return check(probe)
    except Skipped as skip:
        return CheckResult(
            name=name, ok=False, detail=f"skipped: {skip.because}", fix=skip.fix, skipped=True
        )
    except CheckFailed as failure:
        return failed(name, failure.detail, failure.fix)
    except Exception as error:
        # The doctor is run when things are broken; a traceback would hide every other line.
        return failed(
            name,
            f"the check itself failed: {type(error).__name__}: {one_line(str(error))}",
            "this is a bug in `newsletter doctor`; the other lines still hold",
        )


def one_line(message: str, limit: int = 300) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
