"""
The result of a trial as one table row, and the table. No I/O: the trials fill rows, ``run`` prints them.

A row passes when it has no problems. Problems come from two kinds of checks: per task (a task that did not
end as the trial expects counts as "unexpected", with the reason) and per row (the API's counts: submissions,
jobs, duplicate paid jobs, and facts such as "every job was still rendering when the triggerer died").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Row:
    trial: str
    item: str
    """The acceptance criterion of issue 7 the row shows (``1`` ... ``8``; ``9``: user mistakes)."""
    runs: int = 0
    """Task instances (videos, or parameter sets) the trial ran."""
    succeeded: int = 0
    failed_as_expected: int = 0
    unexpected: int = 0
    submissions: int | None = None
    """``POST /api/generate`` requests that reached the API (the paid call)."""
    jobs: int | None = None
    """Jobs the API created (each one is billed)."""
    duplicates: int | None = None
    """The emulator's ``duplicate_submissions``: accepted submissions beyond the first per request."""
    facts: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems

    def check(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; returns ``condition``."""
        if not condition:
            self.problems.append(problem)
        return condition

    def count_task(self, problems: Sequence[str], *, expect_success: bool, where: str) -> None:
        """Count one task: as expected (succeeded, or failed as expected) or unexpected, with its problems."""
        if problems:
            self.unexpected += 1
            self.problems.extend(f"{where}: {problem}" for problem in problems)
        elif expect_success:
            self.succeeded += 1
        else:
            self.failed_as_expected += 1

    def check_api_counts(self, stats: Mapping[str, Any], *, label: str = "API") -> None:
        """The checks every trial makes on its emulator: no paid job twice, no job without a submission."""
        duplicates = int(stats["duplicate_submissions"])
        jobs = int(stats["jobs"]["total"])
        accepted = int(stats["submissions"]["accepted"])
        self.check(
            duplicates == 0, f"{label}: {duplicates} duplicate paid submission(s): {stats['duplicated_fingerprints']}"
        )
        self.check(jobs <= int(stats["submissions"]["total"]), f"{label}: {jobs} jobs for fewer submissions")
        self.check(accepted == jobs, f"{label}: {accepted} accepted submissions but {jobs} jobs")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_facts(facts: Mapping[str, Any]) -> str:
    return "; ".join(f"{name} {value}" for name, value in facts.items())


TABLE_HEADER = (
    "| # | trial | runs | succeeded | failed as expected | unexpected | submissions | jobs created "
    "| duplicates | facts | result |"
)


def markdown_table(rows: Iterable[Row]) -> str:
    lines = [TABLE_HEADER, "|" + "---|" * 11]
    for row in rows:
        cells = (
            row.item,
            row.trial,
            row.runs,
            row.succeeded,
            row.failed_as_expected,
            row.unexpected,
            row.submissions,
            row.jobs,
            row.duplicates,
            format_facts(row.facts),
            "PASS" if row.passed else "FAIL",
        )
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def problem_report(rows: Iterable[Row], limit: int = 20) -> str:
    """The problems of failed rows, a few per row, for the console."""
    parts = []
    for row in rows:
        if row.passed:
            continue
        parts.append(f"FAIL {row.item}. {row.trial}:")
        parts.extend(f"  - {problem}" for problem in row.problems[:limit])
        if len(row.problems) > limit:
            parts.append(f"  - ... and {len(row.problems) - limit} more (see the JSON results)")
    return "\n".join(parts)
