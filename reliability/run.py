"""
Run the reliability suite: crash, fault, bad-input and user-mistake trials on real Airflow processes (issue 7).

    .venv/bin/python -m reliability.run           # default: small counts, a few minutes, what CI runs
    .venv/bin/python -m reliability.run --full    # issue 7's counts (20/20/10/200/...)
    .venv/bin/python -m reliability.run --only 4d # the fault storm in the DashScope dialect (not in the default)
    .venv-distributed/bin/python -m reliability.run --distributed          # the batch and a triggerer kill
    .venv-distributed/bin/python -m reliability.run --distributed --full   # every distributed trial (D1-D8)

One Airflow cluster (scheduler with LocalExecutor, triggerer, dag-processor, REST and execution api-servers on
SQLite) runs every trial's DAG; every trial has its own emulator (and connection), so trials run side by side with
separate counts. With ``--distributed`` the cluster is a distributed one instead (PostgreSQL, Redis, CeleryExecutor
with two workers, two triggerers; ``harness/distributed.py``) running the trials of
``reliability/trials/distributed.py``. Prints a markdown table, writes the details as JSON to
``reliability/results/``, and exits 1 if a row fails (or something could not be stopped).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from reliability.lab import Lab
from reliability.plan import DEFAULT, DISTRIBUTED_FULL, DISTRIBUTED_SHORT, FULL, DistributedPlan, Plan
from reliability.report import Row, markdown_table, problem_report
from reliability.trials import Suite, Trial, VideoBatchTrial, build_distributed_suite, build_suite
from reliability.trials.bad_input import PROPERTY_TEST
from reliability.trials.hostile import hostile_table

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STEP_SECONDS = 1.0


class Progress:
    def __init__(self) -> None:
        self.began = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {message}", file=sys.stderr, flush=True)


def drive(lab: Lab, trials: Sequence[VideoBatchTrial], say: Progress) -> None:
    """Launch the trials in order (waiting for an exclusive one to be armed first) and step them to their end."""
    pending = list(trials)
    active: list[VideoBatchTrial] = []
    done: set[int] = set()
    while pending or len(done) < len(active):
        if pending and all(trial.armed(lab) for trial in active if trial.exclusive_start and id(trial) not in done):
            trial = pending.pop(0)
            _guard(trial, lambda t=trial: t.launch(lab))
            say(f"launched {trial.dag_id} ({trial.count} task(s)), run {trial.run_id or '-'}")
            active.append(trial)
            if not trial.run_id:
                done.add(id(trial))
            continue
        for trial in active:
            if id(trial) in done:
                continue
            if _guard(trial, lambda t=trial: t.step(lab), default=True):
                done.add(id(trial))
                say(f"finished {trial.dag_id} after {time.monotonic() - trial.started:.0f} s")
        time.sleep(STEP_SECONDS)


def _guard(trial: Trial, action: Any, default: Any = None) -> Any:
    """Run a trial's action; an error ends the trial with the error as a problem instead of ending the run."""
    try:
        return action()
    except Exception as error:
        trial.problems.append(f"{type(error).__name__}: {error}")
        trial.problems.append(traceback.format_exc(limit=3))
        trial.ended = time.monotonic()
        return default


def evaluate(trial: Trial, lab: Lab) -> Row:
    if isinstance(trial, VideoBatchTrial) and not trial.run_id:
        row = trial.new_row(trial.count)
        row.problems.append("the trial's DAG run was never created")
        return row
    try:
        return trial.evaluate(lab)
    except Exception as error:
        row = trial.new_row(getattr(trial, "count", 0))
        row.problems.append(f"evaluation failed: {type(error).__name__}: {error}")
        row.details["traceback"] = traceback.format_exc()
        return row


def run_suite(
    plan: Plan, work_dir: Path, say: Progress, only: set[str] | None = None
) -> tuple[list[Row], dict[str, Any]]:
    distributed = isinstance(plan, DistributedPlan)
    suite: Suite = build_distributed_suite(plan) if isinstance(plan, DistributedPlan) else build_suite(plan)
    suite = suite.only(only) if only else suite.without_optional()
    specs = {trial.dag_id: spec for trial in suite.trials if (spec := trial.api_spec()) is not None}
    lab = Lab(
        work_dir, specs, parallelism=plan.parallelism, distributed=distributed, cluster_env=suite.cluster_env(work_dir)
    )
    meta: dict[str, Any] = {}
    rows: list[Row] = []
    try:
        kind = "a distributed Airflow cluster" if distributed else "an Airflow cluster"
        say(f"starting {len(specs)} emulators and {kind} in {work_dir}")
        lab.start()
        meta["cluster_startup_seconds"] = round(lab.cluster.startup_seconds or 0, 1)
        say(f"cluster healthy after {meta['cluster_startup_seconds']} s")
        for number, phase in enumerate(suite.phases, start=1):
            say(f"phase {number}: {', '.join(trial.dag_id for trial in phase)}")
            drive(lab, phase, say)
            rows += [evaluate(trial, lab) for trial in phase]
        if suite.secrets is not None:
            say("searching every log file and table for the API keys")
            rows.append(evaluate(suite.secrets, lab))
    except Exception as error:  # e.g. the cluster did not start: report it like a failed row
        meta["error"] = f"{type(error).__name__}: {error}"
        meta["traceback"] = traceback.format_exc()
    finally:
        say("stopping the cluster and the emulators")
        meta["stop_errors"] = lab.close()
    order = [*"1234", "4d", *"56789", "10", *(f"D{number}" for number in range(1, 9))]
    rows.sort(key=lambda row: order.index(row.item) if row.item in order else len(order))
    return rows, meta


def notes(rows: Sequence[Row]) -> str:
    lines = [
        f"Notes: the model and the emulator agree on request validity (hypothesis: `{PROPERTY_TEST}`); "
        "row 6 runs the operator itself.",
    ]
    trap = next((row for row in rows if row.item == "5" and "user_sees" in row.details), None)
    if trap is not None:
        lines.append("The double-submit trap, as the user sees it in the task log:")
        for attempt, line in trap.details["user_sees"].items():
            lines.append(f"- {attempt}: {line}")
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="issue 7's trial counts (slower)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (Airflow home, logs) even on success")
    parser.add_argument("--only", help="comma-separated items to run, e.g. 1,8, 10, 4d or D1,D4 (default: all but 4d)")
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="the distributed trials (PostgreSQL, Redis, CeleryExecutor: run with .venv-distributed's python); "
        "with --full every one of them, else the batch and one triggerer kill",
    )
    args = parser.parse_args(argv)
    only = {item.strip() for item in args.only.split(",")} if args.only else None
    plan: Plan
    if args.distributed:
        plan = DISTRIBUTED_FULL if args.full else DISTRIBUTED_SHORT
    else:
        plan = FULL if args.full else DEFAULT
    signal.signal(signal.SIGTERM, _on_sigterm)  # so that an interrupted run still stops what it started
    say = Progress()
    work_dir = Path(tempfile.mkdtemp(prefix=f"happyhorse-reliability-{plan.name}-"))
    started = datetime.now(UTC)
    rows, meta = run_suite(plan, work_dir, say, only)
    seconds = time.monotonic() - say.began
    passed = bool(rows) and all(row.passed for row in rows) and not meta["stop_errors"] and "error" not in meta
    command = (
        "python -m reliability.run"
        + (" --distributed" if args.distributed else "")
        + (" --full" if args.full else "")
        + (f" --only {args.only}" if only else "")
    )
    print(f"\nReliability suite, {plan.name} run (`{command}`): {seconds / 60:.1f} min\n")
    print(markdown_table(rows))
    if not args.distributed:
        print()
        print(notes(rows))
        hostile = hostile_table(rows)
        if hostile is not None:
            print("\n" + hostile)
    report = problem_report(rows)
    if report:
        print("\n" + report)
    if "error" in meta:
        print(f"\nThe run broke off: {meta['traceback']}")
    for error in meta["stop_errors"]:
        print(f"could not stop: {error}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results = args.results_dir / f"reliability-{plan.name}-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    keep = args.keep or not passed
    document = {
        "command": command,
        "plan": dataclasses.asdict(plan),
        "started_at": started.isoformat(),
        "seconds": round(seconds, 1),
        "passed": passed,
        "python": platform.python_version(),
        "work_dir": str(work_dir) if keep else None,
        **meta,
        "rows": [row.to_json() for row in rows],
    }
    results.write_text(json.dumps(document, indent=2, default=str))
    verdict = "PASS" if passed else "FAIL"
    print(f"\n{verdict}: {sum(row.passed for row in rows)}/{len(rows)} rows passed; details in {results}")
    if keep:
        print(f"logs kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
