"""6. Bad input: every invalid parameter set fails its task at once, naming the field and the rule; nothing is sent."""

from __future__ import annotations

from reliability.bad_inputs import BAD_INPUTS
from reliability.lab import ApiSpec, Lab
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import SUBMITTED, VideoBatchTrial, expect_state

PROPERTY_TEST = "tests/integration/test_client_against_emulator.py::test_model_and_emulator_agree_on_validity"


class BadInputTrial(VideoBatchTrial):
    item = "6"
    title = f"Bad input: {len(BAD_INPUTS)} invalid parameter sets through the operator"
    dag_id = "rel_bad_input"
    task_id = "invalid"

    def __init__(self, plan: Plan) -> None:
        super().__init__(plan, len(BAD_INPUTS))

    def api_spec(self) -> ApiSpec:
        return ApiSpec(self.plan.emulator(), {"timeout": 10})

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        messages = {}
        for view, case in zip(self.tasks(lab), BAD_INPUTS, strict=True):
            # Retries are allowed on the task: a refused request must not use them.
            problems = expect_state(view, "failed", try_number=1, starts=1)
            log = view.attempt(1)
            named = [text for text in log.exception_texts() if f"{case.field}:" in text and case.rule in text]
            if named:
                messages[case.label] = named[0]
            else:
                problems.append(
                    f"{case.label}: no error naming '{case.field}' and '{case.rule}'; got {log.exception_texts()[:2]}"
                )
            if log.has(SUBMITTED):
                problems.append(f"{case.label}: a job was submitted")
            row.count_task(problems, expect_success=False, where=f"set {view.key.map_index}")
        stats = lab.apis[self.dag_id].stats()
        row.submissions, row.jobs = int(stats["submissions"]["total"]), int(stats["jobs"]["total"])
        row.duplicates = int(stats["duplicate_submissions"])
        row.check_api_counts(stats)
        row.check(row.submissions == 0, f"the API saw {row.submissions} submissions")
        row.check(int(stats["status_calls"]["total"]) == 0, "the API saw status calls")
        row.check(row.jobs == 0, f"the API made {row.jobs} jobs")
        row.facts["fields named"] = len({case.field.split(".")[0] for case in BAD_INPUTS})
        row.facts["requests sent"] = int(stats["submissions"]["total"]) + int(stats["status_calls"]["total"])
        row.facts["model vs emulator"] = f"hypothesis property test {PROPERTY_TEST.split('::')[-1]}"
        row.details["messages"] = messages
        return row
