"""The trials, in the phases the runner drives them (see ``reliability.run``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reliability.ambiguous_faults import AMBIGUOUS_FAULTS
from reliability.plan import DistributedPlan, Plan
from reliability.trials.ambiguous import AmbiguousSubmitTrial
from reliability.trials.bad_input import BadInputTrial
from reliability.trials.base import Trial, VideoBatchTrial
from reliability.trials.crashes import DownloadKillTrial, EmulatorRestartTrial, TriggererKillTrial, WorkerKillTrial
from reliability.trials.distributed import (
    DistributedBatchTrial,
    DistributedDownloadKillTrial,
    DistributedPostgresRestartTrial,
    DistributedSchedulerKillTrial,
    DistributedSecretsTrial,
    DistributedTriggererKillTrial,
    DistributedTriggererStopTrial,
    DistributedWorkerKillTrial,
)
from reliability.trials.hostile import HostileServiceTrial
from reliability.trials.mistakes import MistakesTrial
from reliability.trials.secrets_check import SecretsTrial
from reliability.trials.storm import DashScopeStormTrial, StormTrial

__all__ = ["Suite", "Trial", "VideoBatchTrial", "build_distributed_suite", "build_suite"]


@dataclass(frozen=True)
class Suite:
    phases: tuple[tuple[VideoBatchTrial, ...], ...]
    """Trials of one phase run side by side; phases run one after the other."""
    secrets: SecretsTrial | None
    """Runs last, over everything the others left behind."""

    @property
    def trials(self) -> list[VideoBatchTrial]:
        return [trial for phase in self.phases for trial in phase]

    def cluster_env(self, work_dir: Path) -> dict[str, str]:
        """What the suite's trials need in the environment of every cluster process (trial 10: its egress guard)."""
        env: dict[str, str] = {}
        for trial in self.trials:
            if isinstance(trial, HostileServiceTrial):
                env.update(trial.cluster_env(work_dir))
        return env

    def without_optional(self) -> Suite:
        """The run without ``--only``: every trial but the optional ones (``Trial.optional``)."""
        phases = tuple(tuple(trial for trial in phase if not trial.optional) for phase in self.phases)
        return Suite(phases=tuple(phase for phase in phases if phase), secrets=self.secrets)

    def only(self, items: set[str]) -> Suite:
        """The trials of the given items (``"1"`` ... ``"10"``; distributed: ``"D1"`` ... ``"D8"``)."""
        phases = tuple(tuple(trial for trial in phase if trial.item in items) for phase in self.phases)
        kept = [trial for phase in phases for trial in phase]
        secrets = None
        if self.secrets is not None and self.secrets.item in items:
            canary = self.secrets.canary_trial if self.secrets.canary_trial in kept else kept[0] if kept else None
            secrets = type(self.secrets)(self.secrets.plan, canary) if canary is not None else None
        return Suite(phases=tuple(phase for phase in phases if phase), secrets=secrets)


def build_suite(plan: Plan) -> Suite:
    """Killing the triggerer would touch every deferred task, so it shares its phase only with trials whose
    tasks never defer (ambiguous submissions, bad input). The API crash only touches its own emulator. The user
    mistakes' tasks defer once fixed, so they run in the second phase (last: nothing there waits for them), and so
    does the hostile service (trial 10), which needs the same triggerer from its launch to its end."""
    storm = StormTrial(plan)
    first = (
        TriggererKillTrial(plan),
        *(AmbiguousSubmitTrial(plan, fault) for fault in AMBIGUOUS_FAULTS),
        BadInputTrial(plan),
    )
    second = (
        EmulatorRestartTrial(plan),
        WorkerKillTrial(plan),
        DownloadKillTrial(plan),
        storm,
        DashScopeStormTrial(plan),
        MistakesTrial(plan),
        HostileServiceTrial(plan),
    )
    return Suite(phases=(first, second), secrets=SecretsTrial(plan, canary_trial=storm))


def build_distributed_suite(plan: DistributedPlan) -> Suite:
    """Each fault touches the whole cluster (a triggerer, a worker, the scheduler, the database), so each has a
    phase of its own, after the batch. The short plan (CI): the batch, then one triggerer kill."""
    batch = DistributedBatchTrial(plan)
    phases: list[tuple[VideoBatchTrial, ...]] = [(batch,), (DistributedTriggererKillTrial(plan),)]
    if not plan.short:
        phases += [
            (DistributedTriggererStopTrial(plan),),
            (DistributedWorkerKillTrial(plan),),
            (DistributedDownloadKillTrial(plan),),
            (DistributedSchedulerKillTrial(plan),),
            (DistributedPostgresRestartTrial(plan),),
        ]
    return Suite(phases=tuple(phases), secrets=DistributedSecretsTrial(plan, canary_trial=batch))
