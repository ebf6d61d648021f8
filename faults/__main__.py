"""`python -m faults`: run the fault scenarios and print sent/duplicates/lost/uncertain/time."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from faults.deployment import services
from faults.scenarios import SCENARIOS, Outcome, Round


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m faults",
        description="Send the sample week to N subscribers while a fault strikes, and count "
        "what SES received. Needs PostgreSQL (FAULTS_POSTGRES_URL), redis-server and the SES "
        "emulator (make ses-emulator). Exits 1 if any round lost or duplicated a message.",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per scenario (default 3)")
    parser.add_argument(
        "--subscribers", type=int, default=2000, help="subscribers per round (default 2000)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable)",
    )
    return parser.parse_args(argv)


def table(outcomes: list[Outcome]) -> Table:
    shown = Table(title="Fault suite: every round counted against what SES received")
    for heading in (
        "scenario",
        "round",
        "sent",
        "duplicates",
        "lost",
        "in flight",
        "uncertain",
        "settled by SES events",
        "time",
        "",
    ):
        shown.add_column(heading, justify="left" if heading in ("scenario", "") else "right")
    for o in outcomes:
        shown.add_row(
            o.scenario,
            str(o.round),
            f"{o.sent:,}",
            str(o.duplicates),
            str(o.lost),
            str(o.in_flight),
            str(o.uncertain),
            str(o.settled),
            f"{o.time_s:.1f} s",
            ("" if o.ok else "FAILED ") + o.note,
        )
    return shown


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    console = Console(width=140)  # the table's ten columns, also when piped to a file
    chosen = args.only or list(SCENARIOS)
    outcomes: list[Outcome] = []
    folder = Path(tempfile.mkdtemp(prefix="verdicts-faults-"))
    with services(folder) as shared:
        for name in chosen:
            for number in range(1, args.rounds + 1):
                round_ = Round(shared, folder / name, args.subscribers, number, number)
                with console.status(f"{name}, round {number} of {args.rounds}"):
                    outcome = SCENARIOS[name](round_)
                outcomes.append(outcome)
                console.print(
                    f"{outcome.scenario} round {number}: sent {outcome.sent:,}, "
                    f"duplicates {outcome.duplicates}, lost {outcome.lost}, "
                    f"uncertain {outcome.uncertain}, {outcome.time_s:.1f} s"
                )
    console.print(table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    if failed:
        console.print(
            f"[red]{len(failed)} round(s) lost or duplicated mail[/red]; logs in {folder}"
        )
        return 1
    shutil.rmtree(folder, ignore_errors=True)
    console.print("every round: 0 duplicates, 0 lost")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
