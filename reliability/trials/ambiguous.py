"""
5. Submissions whose outcome is unknown, one row per kind of fault (``reliability.ambiguous_faults``).

The double-submit trap is the first row: the service creates the job, then the connection drops before the
answer arrives. The client cannot tell it from a drop before the job was created (the second row), so in
both cases the task fails with "outcome unknown", the retry refuses to submit, and the user looks in the
dashboard. What the user sees is kept in the row's details (``user_sees``).
"""

from __future__ import annotations

from reliability.ambiguous_faults import CLIENT_TIMEOUT_SECONDS, AmbiguousFault
from reliability.lab import ApiSpec, Lab
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import OUTCOME_UNKNOWN, REFUSED, SUBMITTED, VideoBatchTrial, expect_state, first_line


class AmbiguousSubmitTrial(VideoBatchTrial):
    item = "5"

    def __init__(self, plan: Plan, fault: AmbiguousFault) -> None:
        super().__init__(plan, plan.ambiguous)
        self.fault = fault
        self.dag_id = fault.dag_id
        self.title = f"Outcome unknown: {fault.label}"

    def api_spec(self) -> ApiSpec:
        config = self.plan.emulator(seed=5, faults={**self.fault.faults, "faults_on": ["generate"]})
        connection = {
            "timeout": CLIENT_TIMEOUT_SECONDS,
            "submit_max_retries": 3,
            "retry_initial_delay": 0.5,
            "retry_max_delay": 2,
        }
        return ApiSpec(config, connection)

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        views = self.tasks(lab)
        refused = 0
        for view in views:
            problems = expect_state(view, "failed", try_number=2, starts=2)
            first, retry = view.attempt(1), view.attempt(2)
            if not first.has(OUTCOME_UNKNOWN):
                problems.append("the first try did not fail with 'outcome unknown'")
            if first.has(SUBMITTED):
                problems.append("the first try reported a job id")
            if retry.has(REFUSED):
                refused += 1
            else:
                problems.append("the retry did not refuse to submit")
            if retry.has(SUBMITTED):
                problems.append("the retry submitted")
            row.count_task(problems, expect_success=False, where=f"video {view.key.map_index}")
            if "user_sees" not in row.details and first.exists and retry.exists:
                row.details["user_sees"] = {
                    "first try": first_line(first, OUTCOME_UNKNOWN),
                    "retry": first_line(retry, REFUSED),
                }
        stats = lab.apis[self.dag_id].stats()
        row.submissions, row.jobs = int(stats["submissions"]["total"]), int(stats["jobs"]["total"])
        row.duplicates = int(stats["duplicate_submissions"])
        row.check_api_counts(stats)
        kinds = stats["faults"]["by_kind"]
        if self.fault.jobs == "some":  # 5xx: a retried 503 with Retry-After adds submissions, never jobs
            expected_jobs = int(kinds["server_error_after_create"])
            row.check(row.submissions >= self.count, f"{row.submissions} submissions for {self.count} tasks")
        else:
            expected_jobs = self.count if self.fault.jobs == "all" else 0
            row.check(row.submissions == self.count, f"{row.submissions} submissions for {self.count} tasks")
        row.check(row.jobs == expected_jobs, f"{row.jobs} jobs, expected {expected_jobs}")
        row.facts["refused on retry"] = f"{refused}/{self.count}"
        row.facts["jobs waiting in the dashboard"] = row.jobs
        if self.fault.jobs == "some":
            row.facts["5xx after the job was made"] = f"{kinds['server_error_after_create']}/{kinds['server_error']}"
        return row
