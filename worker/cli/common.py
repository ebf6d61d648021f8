"""What every command shares: consoles, error handling, opening the database."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import dramatiq.errors
import redis
import typer
from pydantic import ValidationError
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from worker import db
from worker.config import Settings, get_settings
from worker.errors import ConfigError, InputError, SchemaOutOfDateError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_INPUT = 2
EXIT_NO_COMPARISON = 3

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _unreachable(detail: str) -> bool:
    return any(
        phrase in detail.lower()
        for phrase in ("connection refused", "could not connect", "unable to open", "timeout")
    )


def friendly(command: Callable[P, R]) -> Callable[P, R]:
    """Turn known failures into one clear line and an exit status; never a traceback."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except InputError as error:
            fail(str(error), EXIT_INPUT)
        except ConfigError as error:
            fail(str(error), EXIT_INPUT)
        except SchemaOutOfDateError as error:
            fail(str(error))
        except DBAPIError as error:
            detail = str(error.orig).strip().splitlines()[0]
            if error.connection_invalidated or _unreachable(detail):
                fail(f"database unreachable (DATABASE_URL): {detail}")
            fail(f"database error, nothing more was done: {detail}")
        except (redis.RedisError, dramatiq.errors.BrokerConnectionError) as error:
            fail(f"Redis unreachable (REDIS_URL): {str(error).strip().splitlines()[0]}")

    return run


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ValidationError as error:
        for problem in error.errors():
            name = str(problem["loc"][0]) if problem["loc"] else "setting"
            err.print(f"[red]error:[/red] {name.upper()}: {problem['msg']}")
        raise typer.Exit(EXIT_INPUT) from None


@contextmanager
def opened() -> Iterator[tuple[Settings, Engine]]:
    settings = settings_or_exit()
    engine = db.make_engine(settings)
    try:
        db.ensure_schema(engine, settings)
        yield settings, engine
    finally:
        engine.dispose()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
