"""
10. A hostile service: a server that speaks the HappyHorse API but answers to hurt (``reliability.hostile``),
against one DAG run of mapped ``GenerateVideoOperator`` tasks, one per case, with normal renders running beside
them. Per case it checks:

- what the user sees: the task's state and an error text in its log naming the job, the URL's host and the rule
  (for an answer of the API itself: the job and the rule; for a tampered clip: the view's 404 and its detail);
- forbidden fetches: none. Every process of the cluster runs the egress guard (``reliability.egress_guard``,
  installed as ``sitecustomize``), which refuses and writes down any connect outside loopback, so a fetch from
  169.254.169.254 or 10.255.255.1 cannot happen and would be seen; and the 127.0.0.2 listener, which stands for
  every other forbidden address, records every request (FFmpeg's own sockets included);
- foreign bodies: the marker the hostile server puts in every body nobody should read (127.0.0.2's, redirects',
  errors', the gzip bomb's), the connection's API key and the secret file's marker are in no log or table of
  any component (``AirflowCluster.find_secret``), and the key never went to a result URL;
- wrong files: nothing at a refused case's final path (nor its poster, record or partial file beside it); a
  stored clip is exactly the served one; nothing anywhere named after the bad job id;
- the triggerer: the same processes from launch to end (the trigger runner was not replaced), its memory did
  not grow by the bomb, and every render that should succeed did, while the bomb was being served;
- paid = videos: exactly one paid submission for each task (the API counts per request fingerprint).

Two tampering cases read the api-server's HappyHorse view (``/happyhorse/files/video`` and ``/files/poster``)
after a normal render stored its clip: once with the task's result XCom PATCHed (through the REST API) to point
at a secret file, once with the clip's ``.happyhorse.json`` record pointed at it and the clip's bytes changed
(size kept). Each must be a 404 naming the rule, with no byte of the secret in the body; before the tampering,
the same route must serve the clip (so the 404 is the rule's doing).

The main table gets one row (item 10); ``case_table`` renders the per-case table ``reliability.run`` prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from harness.airflow_cluster import TaskKey
from harness.processes import REPO_ROOT
from reliability import egress_guard
from reliability.hostile import (
    BOMB_POLLS,
    CASE_PREFIX,
    CASES,
    HostileService,
    new_marker,
)
from reliability.lab import Lab
from reliability.plan import Plan
from reliability.report import Row
from reliability.trials.base import TaskView, VideoBatchTrial

DEFAULT_CONNECTION = "rel_hostile"
CAPPED_CONNECTION = "rel_hostile_capped"
# Small timeouts: nothing here should wait long. One download retry (a body that is not a video is fetched again).
DEFAULT_EXTRA: dict[str, Any] = {"timeout": 10, "max_retries": 1, "retry_initial_delay": 0.5, "retry_max_delay": 1}
# The cap rows: the drip sends a byte a second, under `timeout` (5 s per read), so only the whole-transfer
# deadline (8 s) can stop it; 1 MB is far under the 3 MiB body and the endless stream.
CAPPED_EXTRA: dict[str, Any] = {
    "timeout": 5,
    "download_timeout": 8,
    "max_download_bytes": 1_000_000,
    "max_retries": 0,
    "retry_initial_delay": 0.5,
    "retry_max_delay": 1,
}
TRIGGERER_GROWTH_LIMIT = 256 * 1024 * 1024
"""The triggerer's memory (all its processes) may grow by less than this: an inflated bomb is 400 MiB."""
VIEW_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("xcom", "video"): ("record",),  # the secret file has no record beside it
    ("xcom", "poster"): ("beside", "record"),  # the poster path is not the poster beside the clip
    ("sidecar", "video"): ("SHA-256", "sha256", "record"),  # the clip's bytes are not the recorded ones
}
"""A 404 of the view must name its rule: its detail holds one of these words, per (tampering, route)."""
SECRET_FILE_HEAD = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"  # an MP4 signature: only the record stops it


@dataclass(frozen=True)
class Expectation:
    """What the user must see for one case, and how it runs."""

    case: str
    label: str
    state: str  # the task's final state
    tries: int = 1
    """Tries the task takes: every task may retry once; a refusal by rule fails at once (AirflowFailException),
    a download past its limits or not a video fails its try (the retry re-attaches, pays nothing, fails again)."""
    needles: tuple[str, ...] = ()
    """Every one of these is in one text of the task's log (``{job}`` and ``{host}`` are filled in). The host
    (of the result URL, or of the redirect hop refused) is asked for wherever a result URL is involved."""
    connection: str = DEFAULT_CONNECTION
    aspect_ratio: str = "16:9"
    tampered: str | None = None  # "xcom" or "sidecar": the view is read after the render

    @property
    def stores_clip(self) -> bool:
        return self.state == "success"


REFUSED = "was not downloaded"
LINK_LOCAL_RULE = "link-local address"
PRIVATE_RULE = "private address"
LOOPBACK_RULE = "loopback address other than the API's"
_REFUSALS = (
    ("link_local", "result URL on 169.254.169.254", LINK_LOCAL_RULE),
    ("private", "result URL on 10.255.255.1", PRIVATE_RULE),
    ("loopback_other", "result URL on 127.0.0.2", LOOPBACK_RULE),
    ("redirect_link_local", "redirect to 169.254.169.254", LINK_LOCAL_RULE),
    ("redirect_private", "redirect to 10.255.255.1", PRIVATE_RULE),
    ("redirect_loopback", "redirect to 127.0.0.2", LOOPBACK_RULE),
)
_CAPPED = CAPPED_CONNECTION
EXPECTATIONS: dict[str, Expectation] = {
    item.case: item
    for item in (
        *(Expectation(case, label, "failed", 1, ("{job}", "{host}", REFUSED, rule)) for case, label, rule in _REFUSALS),
        # An answer of the API itself: retried like any malformed answer, then the render succeeds.
        Expectation(
            "gzip_bomb",
            f"status answer a gzip bomb (x{BOMB_POLLS})",
            "success",
            1,
            ("{job}", "limit for an API answer"),
        ),
        Expectation(
            "endless", "endless download (1 MB cap)", "failed", 2, ("{job}", "{host}", "max_download_bytes"), _CAPPED
        ),
        Expectation(
            "slow_drip",
            "slow-drip download (8 s deadline)",
            "failed",
            2,
            ("{job}", "{host}", "download_timeout"),
            _CAPPED,
        ),
        Expectation(
            "over_cap", "3 MiB body (1 MB cap)", "failed", 2, ("{job}", "{host}", "max_download_bytes"), _CAPPED
        ),
        Expectation("hls_playlist", "HLS playlist naming 127.0.0.2", "failed", 2, ("{job}", "{host}", "not a video")),
        Expectation(
            "huge_frame",
            "MP4 declaring 16000x16000",
            "failed",
            2,
            ("{job}", "{host}", "16000x16000", "pixel limit"),
            aspect_ratio="1:1",
        ),
        # The second try finds the first one's submission with no job id: it refuses to pay again.
        Expectation("bad_job_id", "job id ../../etc/x-...", "failed", 2, ("outcome is unknown", "not a job id")),
        Expectation("tampered_xcom", "XCom pointed at a secret file", "success", tampered="xcom"),
        Expectation("tampered_sidecar", "record pointed at a secret, clip changed", "success", tampered="sidecar"),
    )
}
assert tuple(EXPECTATIONS) == CASES
NORMAL = Expectation("normal", "normal render", "success")


# -- evidence and verdicts (pure) ----------------------------------------------------------------------


@dataclass
class ViewEvidence:
    """The HappyHorse view, read before and after the tampering."""

    before_status: int | None = None
    before_is_clip: bool = False
    after: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Per route (video, poster): the status and the body's text after the tampering."""
    secret_in_body: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class CaseEvidence:
    """Everything observed about one task; ``judge`` turns it into problems."""

    expected: Expectation
    index: int
    state: str | None
    try_number: int
    texts: list[str]
    job_id: str | None
    host: str
    egress_lines: list[str]
    """Lines of the egress guard's log (all of them: any refused connect fails every row)."""
    forbidden_requests: list[str]
    """Requests the 127.0.0.2 listener got for this job, or for no job it could tell."""
    keyed_downloads: int
    """Result-file or redirect requests of this job that carried an Authorization header."""
    foreign_places: list[str]
    """Where the marker, the API key or the secret marker were found in this task's logs, or outside any task log."""
    file_problems: list[str]
    triggerer_problems: list[str]
    others: tuple[int, int]
    """(succeeded, expected to succeed) among the run's other tasks."""
    paid: int
    """Paid (accepted) submissions of this task's request."""
    jobs: int
    view: ViewEvidence | None = None


@dataclass
class CaseVerdict:
    index: int
    case: str
    label: str
    problems: list[str]
    sees: str
    cells: dict[str, str]

    @property
    def passed(self) -> bool:
        return not self.problems


def fill(needles: Sequence[str], job_id: str | None, host: str) -> list[str]:
    return [needle.replace("{job}", job_id or "<no job id>").replace("{host}", host) for needle in needles]


def matching_text(texts: Sequence[str], needles: Sequence[str]) -> str | None:
    """The first text holding every needle."""
    return next((text for text in texts if all(needle in text for needle in needles)), None)


def short(text: str, limit: int = 220) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(evidence: CaseEvidence) -> CaseVerdict:
    """One case's problems and table cells, from what was observed."""
    expected = evidence.expected
    problems: list[str] = []
    # What the user sees.
    if evidence.state != expected.state:
        problems.append(f"ended {evidence.state}, expected {expected.state}")
    if evidence.try_number != expected.tries:
        problems.append(f"took {evidence.try_number} tries, expected {expected.tries}")
    needles = fill(expected.needles, evidence.job_id, evidence.host)
    seen = matching_text(evidence.texts, needles) if needles else None
    errors = [text for text in evidence.texts if "Error" in text or "Exception" in text]
    if needles and seen is None:
        problems.append(f"no text in its log names all of {needles}; got {[short(text, 160) for text in errors[:2]]}")
    shown = seen or (errors[0] if errors and expected.state == "failed" else None)
    sees = f"{evidence.state}: {short(shown)}" if shown else str(evidence.state)
    view = evidence.view
    if expected.tampered is not None:
        sees, view_problems = judge_view(expected, view)
        problems += view_problems
    # Forbidden fetches.
    if evidence.egress_lines:
        problems.append(
            f"{len(evidence.egress_lines)} connect(s) outside loopback refused: {evidence.egress_lines[:2]}"
        )
    if evidence.forbidden_requests:
        problems.append(f"the 127.0.0.2 listener was fetched from: {evidence.forbidden_requests[:3]}")
    if evidence.keyed_downloads:
        problems.append(f"{evidence.keyed_downloads} result download(s) carried the API key")
    # Foreign bodies, wrong files, the triggerer, paid = videos.
    if evidence.foreign_places:
        problems.append(f"a foreign body or secret is in the logs: {evidence.foreign_places[:3]}")
    problems += evidence.file_problems
    problems += evidence.triggerer_problems
    succeeded, expected_ok = evidence.others
    if succeeded != expected_ok:
        problems.append(f"only {succeeded} of the {expected_ok} other renders that should succeed did")
    if evidence.paid != 1 or evidence.jobs != 1:
        problems.append(f"{evidence.paid} paid submission(s) and {evidence.jobs} job(s) for one task, expected 1 and 1")
    cells = {
        "forbidden fetches": str(
            len(evidence.egress_lines) + len(evidence.forbidden_requests) + evidence.keyed_downloads
        ),
        "foreign bodies in logs": str(len(evidence.foreign_places)),
        "wrong files": str(len(evidence.file_problems)),
        "triggerer alive / others succeeded": (
            f"{'yes' if not evidence.triggerer_problems else 'NO'} / {succeeded}/{expected_ok}"
        ),
        "paid = videos": f"{evidence.paid} paid / {evidence.jobs} job" + (" / 1 clip" if expected.stores_clip else ""),
    }
    return CaseVerdict(evidence.index, expected.case, expected.label, problems, sees, cells)


def judge_view(expected: Expectation, view: ViewEvidence | None) -> tuple[str, list[str]]:
    """The tampering cases: the route served the clip before, and a 404 naming its rule after, with no secret."""
    if view is None:
        return "-", ["the view was never read (the run did not finish, or the clip was not stored)"]
    problems = []
    if view.error is not None:
        problems.append(f"reading the view failed: {view.error}")
    if view.before_status != 200 or not view.before_is_clip:
        problems.append(f"before the tampering the view answered {view.before_status}, not the clip (control)")
    routes = ("video", "poster") if expected.tampered == "xcom" else ("video",)
    shown = []
    for route in routes:
        status, body = view.after.get(route, (None, ""))
        detail = _detail(body)
        shown.append(f"{route} {status} {short(detail, 120)!r}")
        if status != 404:
            problems.append(f"after the tampering /files/{route} answered {status}, expected 404")
        elif not any(word.lower() in detail.lower() for word in VIEW_RULES[(str(expected.tampered), route)]):
            problems.append(f"the 404 of /files/{route} names no rule: {detail!r}")
    if view.secret_in_body:
        problems.append(f"the secret file's bytes were served by {view.secret_in_body}")
    return "; ".join(shown), problems


def _detail(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return body
    return str(document.get("detail", body)) if isinstance(document, dict) else body


TABLE_COLUMNS = (
    "#",
    "case",
    "what the user sees",
    "forbidden fetches",
    "foreign bodies in logs",
    "wrong files",
    "triggerer alive / others succeeded",
    "paid = videos",
    "result",
)


def case_table(cases: Sequence[Mapping[str, Any]]) -> str:
    """The per-case table (from the row's ``details["cases"]``)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for case in cases:
        values = (
            case["index"],
            case["label"],
            case["sees"],
            *(case["cells"][name] for name in TABLE_COLUMNS[3:-1]),
            "PASS" if not case["problems"] else "FAIL",
        )
        lines.append("| " + " | ".join(cell(value) for value in values) + " |")
    return "\n".join(lines)


def hostile_table(rows: Sequence[Row]) -> str | None:
    """The per-case table of trial 10's row, when the run has one."""
    row = next((row for row in rows if row.item == HostileServiceTrial.item and row.details.get("cases")), None)
    if row is None:
        return None
    return f"Trial 10, {row.trial}, per case:\n\n{case_table(row.details['cases'])}"


def attribute(place: str, dag_id: str, run_id: str) -> int | None:
    """The map index of the task log ``place`` (``path:line``) is in, None when it is not one of the run's."""
    parts = dict(part.split("=", 1) for part in Path(place.rsplit(":", 1)[0]).parts if "=" in part)
    if parts.get("dag_id") != dag_id or parts.get("run_id") != run_id or "map_index" not in parts:
        return None
    try:
        return int(parts["map_index"])
    except ValueError:
        return None


def resident_bytes(pid: int) -> int:
    """A process's resident memory (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((line for line in status.splitlines() if line.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) * 1024


# -- the trial ------------------------------------------------------------------------------------------


class HostileServiceTrial(VideoBatchTrial):
    item = "10"
    title = "Hostile service: forbidden addresses, redirects, bombs, caps, bad ids, tampered clips"
    dag_id = "rel_hostile"

    def __init__(self, plan: Plan) -> None:
        self.expectations = [*EXPECTATIONS.values(), *([NORMAL] * plan.hostile_normals)]
        super().__init__(plan, len(self.expectations))
        self.timeout = min(plan.trial_timeout, 300.0)
        self.service: HostileService | None = None
        self.api_key = f"hh-rel-hostile-{secrets.token_hex(16)}"
        self.marker = new_marker()
        self.secret_marker = f"SECRET-{secrets.token_hex(12)}"
        self.guard_log: Path | None = None
        self.home = Path()
        self.secret_file = Path()
        self.triggerer_pids: list[int] = []
        self.triggerer_rss: list[int] = []
        self.views: dict[int, ViewEvidence] = {}
        self.stored_before: dict[int, list[str]] = {}

    # -- set-up -------------------------------------------------------------------------------------------

    def cluster_env(self, work_dir: Path) -> dict[str, str]:
        """The egress guard for every process of the cluster: ``sitecustomize`` first on ``PYTHONPATH``."""
        self.home = work_dir / "hostile"
        site = self.home / "site"
        site.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(Path(egress_guard.__file__).read_text())
        self.guard_log = self.home / "egress-refused.log"
        self.guard_log.touch()
        path = [str(site), str(REPO_ROOT), *([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])]
        return {"PYTHONPATH": os.pathsep.join(path), egress_guard.LOG_VARIABLE: str(self.guard_log)}

    def clips(self, lab: Lab) -> Path:
        return lab.clips_dir / self.dag_id / self.batch

    def case_name(self, index: int) -> str:
        expected = self.expectations[index]
        return expected.case if expected is not NORMAL else f"normal-{index}"

    def final(self, lab: Lab, index: int) -> Path:
        return self.clips(lab) / f"{self.case_name(index)}.mp4"

    def prompt(self, index: int) -> str:
        expected = self.expectations[index]
        if expected is NORMAL:
            return f"trial 10 normal render {index}, batch {self.batch}: a horse crossing a river at dawn"
        return f"{CASE_PREFIX}{expected.case} trial 10, batch {self.batch}: a horse in a hostile land"

    def case_kwargs(self, lab: Lab) -> list[dict[str, Any]]:
        cases = []
        for index, expected in enumerate(self.expectations):
            # Half of the normal renders on the capped connection: the caps do not stop a normal clip.
            connection = CAPPED_CONNECTION if expected is NORMAL and index % 2 else expected.connection
            cases.append(
                {
                    "prompt": self.prompt(index),
                    "happyhorse_conn_id": connection,
                    "aspect_ratio": expected.aspect_ratio,
                    "output_path": f"file://{self.final(lab, index)}",
                }
            )
        return cases

    def launch(self, lab: Lab) -> None:
        self.batch = self.batch or secrets.token_hex(4)
        self.clips(lab).mkdir(parents=True, exist_ok=True)
        if not self.home.parts:  # cluster_env was not called (a lab made elsewhere): still a home of our own
            self.home = lab.work_dir / "hostile"
            self.home.mkdir(parents=True, exist_ok=True)
        self.secret_file = self.home / f"secret-{self.batch}.mp4"
        self.secret_file.write_bytes(SECRET_FILE_HEAD + f"\nSECRET {self.secret_marker}\n".encode())
        self.service = HostileService(self.api_key, self.marker).start()
        for conn_id, extra in ((DEFAULT_CONNECTION, DEFAULT_EXTRA), (CAPPED_CONNECTION, CAPPED_EXTRA)):
            body = {
                "connection_id": conn_id,
                "conn_type": "happyhorse",
                "host": self.service.base_url,
                "password": self.api_key,
                "extra": json.dumps(extra),
            }
            lab.cluster.api("POST", "/connections", json=body)
        self.triggerer_pids = sorted(lab.cluster.pids("triggerer"))
        self.sample_triggerer()
        self.extra_conf = {"cases": self.case_kwargs(lab)}
        super().launch(lab)

    # -- driving --------------------------------------------------------------------------------------------

    def sample_triggerer(self) -> None:
        self.triggerer_rss.append(sum(resident_bytes(pid) for pid in self.triggerer_pids))

    def step(self, lab: Lab) -> bool:
        self.sample_triggerer()
        if not self.run_finished(lab):
            return False
        if not self.problems:
            self.read_the_view(lab)
        self.ended = time.monotonic()
        return True

    def key(self, index: int) -> TaskKey:
        return TaskKey(self.dag_id, self.run_id, self.task_id, index)

    def view_get(self, lab: Lab, route: str, index: int) -> httpx.Response:
        params = {"dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id, "map_index": str(index)}
        return httpx.get(f"http://127.0.0.1:{lab.cluster.port}/happyhorse/files/{route}", params=params, timeout=30)

    def read_the_view(self, lab: Lab) -> None:
        """The tampering cases: serve, tamper, serve again."""
        for index, expected in enumerate(self.expectations):
            if expected.tampered is None:
                continue
            view = self.views.setdefault(index, ViewEvidence())
            self.stored_before[index] = self.stored_problems(lab, index)
            try:
                final = self.final(lab, index)
                if not final.exists():
                    raise FileNotFoundError(f"no clip at {final} to tamper with")
                clip = final.read_bytes()
                before = self.view_get(lab, "video", index)
                view.before_status, view.before_is_clip = before.status_code, before.content == clip
                if expected.tampered == "xcom":
                    self.tamper_xcom(lab, index)
                else:
                    self.tamper_sidecar(final)
                routes = ("video", "poster") if expected.tampered == "xcom" else ("video",)
                for route in routes:
                    after = self.view_get(lab, route, index)
                    view.after[route] = (after.status_code, after.text[:2000])
                    if self.secret_marker.encode() in after.content:
                        view.secret_in_body.append(route)
            except Exception as error:
                view.error = f"{type(error).__name__}: {error}"

    def tamper_xcom(self, lab: Lab, index: int) -> None:
        result = lab.xcom(self.key(index), "return_value")
        if not isinstance(result, dict):
            raise ValueError(f"no result XCom to tamper with: {result!r}")
        tampered = {**result, "stored_path": f"file://{self.secret_file}", "poster_path": f"file://{self.secret_file}"}
        run = quote(self.run_id, safe="")
        path = f"/dags/{self.dag_id}/dagRuns/{run}/taskInstances/{self.task_id}/xcomEntries/return_value"
        lab.cluster.api("PATCH", path, json={"value": tampered, "map_index": index})

    def tamper_sidecar(self, final: Path) -> None:
        record_path = final.parent / f"{final.name}.happyhorse.json"
        record = json.loads(record_path.read_text())
        record["stored"]["path"] = f"file://{self.secret_file}"
        record_path.write_text(json.dumps(record))
        data = bytearray(final.read_bytes())
        payload = f"SECRET {self.secret_marker}".encode()
        middle = len(data) // 2
        data[middle : middle + len(payload)] = payload  # the same size: only a digest tells
        final.write_bytes(bytes(data))

    # -- evidence -----------------------------------------------------------------------------------------

    def stored_problems(self, lab: Lab, index: int) -> list[str]:
        """A clip that should be stored: exactly the served clip, recorded and verified, nothing beside it."""
        assert self.service is not None
        final = self.final(lab, index)
        job = self.job_for(index)
        result = lab.xcom(self.key(index), "return_value")
        problems = []
        if not final.exists():
            return ["no clip at the final path"]
        digest = hashlib.sha256(final.read_bytes()).hexdigest()
        served = self.service.served_sha256(job.job_id) if job is not None else None
        if digest != served:
            problems.append("the file at the final path is not the clip the service served")
        if not isinstance(result, dict) or result.get("stored_sha256") != digest or result.get("verified") is not True:
            problems.append("the task's result does not record this clip as verified")
        problems += self.leftovers(final)
        return problems

    def refused_problems(self, lab: Lab, index: int) -> list[str]:
        """A case that must store nothing: no clip, poster or record, no partial file."""
        final = self.final(lab, index)
        present = [
            path.name
            for path in (
                final,
                final.parent / f"{final.stem}.poster.jpg",
                final.parent / f"{final.name}.happyhorse.json",
            )
            if path.exists()
        ]
        problems = [f"a file at a final path: {present}"] if present else []
        return problems + self.leftovers(final)

    @staticmethod
    def leftovers(final: Path) -> list[str]:
        beside = sorted(
            path.name
            for pattern in (f".{final.name}.*", f".{final.stem}.poster.jpg.*")
            for path in final.parent.glob(pattern)
        )
        return [f"files left beside the final path: {beside}"] if beside else []

    def bad_id_problems(self, lab: Lab, index: int) -> list[str]:
        assert self.service is not None
        name = self.service.bad_job_id.rsplit("/", 1)[-1]
        named = [str(path) for path in lab.work_dir.rglob(f"*{name}*")]
        named += [str(path) for path in Path("/etc").glob(f"{name}*")]
        problems = [f"files named after the bad job id: {named[:3]}"] if named else []
        if lab.xcom(self.key(index), "job_id") is not None:
            problems.append("the bad job id was pushed as the task's job id")
        polled = [r for r in self.service.records() if r.path == "/api/status" and r.job_id == self.service.bad_job_id]
        if polled:
            problems.append(f"the bad job id was polled {len(polled)} time(s)")
        return problems

    def job_for(self, index: int) -> Any:
        assert self.service is not None
        prompt = self.prompt(index)
        jobs = [job for job in self.service.jobs().values() if job.prompt == prompt]
        return jobs[0] if jobs else None

    def texts(self, view: TaskView) -> list[str]:
        texts: list[str] = []
        for attempt in range(1, max(view.try_number, 1) + 1):
            log = view.attempt(attempt)
            texts += log.exception_texts()
            texts += list(log.lines())
        for log in view.triggers().values():
            texts += list(log.lines())
        return texts

    def triggerer_problems(self, lab: Lab) -> list[str]:
        problems = []
        now = sorted(lab.cluster.pids("triggerer"))
        if not self.triggerer_pids:
            problems.append("the triggerer was not running at launch")
        elif now != self.triggerer_pids:
            problems.append(f"the triggerer's processes changed: {self.triggerer_pids} at launch, {now} at the end")
        growth = max(self.triggerer_rss, default=0) - (self.triggerer_rss[0] if self.triggerer_rss else 0)
        if growth >= TRIGGERER_GROWTH_LIMIT:
            problems.append(f"the triggerer's memory grew by {growth / 2**20:.0f} MiB")
        return problems

    def foreign_places(self, lab: Lab) -> dict[int | None, list[str]]:
        """Where a foreign body or secret is, by the map index of the task log it is in (None: elsewhere)."""
        found: dict[int | None, list[str]] = {}
        for name, needle in (("marker", self.marker), ("API key", self.api_key), ("secret", self.secret_marker)):
            for place in lab.cluster.find_secret(needle):
                found.setdefault(attribute(place, self.dag_id, self.run_id), []).append(f"{name} in {place}")
        return found

    def evaluate(self, lab: Lab) -> Row:
        row = self.new_row(self.count)
        if self.service is None:
            row.problems.append("the hostile service was never started")
            return row
        self.service.stop()
        views = self.tasks(lab)
        records = self.service.records()
        egress = self.guard_log.read_text().splitlines() if self.guard_log and self.guard_log.exists() else []
        if self.guard_log is None:
            row.problems.append("the egress guard was not installed (the cluster was not started with its env)")
        foreign = self.foreign_places(lab)
        triggerer = self.triggerer_problems(lab)
        jobs = self.service.jobs()
        submissions = self.service.submissions()
        forbidden = [record for record in records if record.listener == "forbidden"]
        unattributed = [f"{r.method} {r.path}" for r in forbidden if r.job_id not in jobs]
        should_succeed = [index for index, expected in enumerate(self.expectations) if expected.stores_clip]
        verdicts = []
        for view in views:
            index = view.key.map_index
            expected = self.expectations[index]
            job = self.job_for(index)
            job_id = job.job_id if job is not None else None
            host = "127.0.0.1"
            if job is not None and expected.tampered is None:
                url = self.service.redirect_target(job) or self.service.result_url(job)
                host = urlsplit(url).hostname or host
            if expected.tampered is not None:
                files = self.stored_before.get(index, ["the clip was never checked before the tampering"])
            elif expected.stores_clip:
                files = self.stored_problems(lab, index)
            else:
                files = self.refused_problems(lab, index)
            if expected.case == "bad_job_id":
                files = files + self.bad_id_problems(lab, index)
            others = [i for i in should_succeed if i != index]
            evidence = CaseEvidence(
                expected=expected,
                index=index,
                state=view.state,
                try_number=view.try_number,
                texts=self.texts(view),
                job_id=job_id,
                host=host,
                egress_lines=egress,
                forbidden_requests=[f"{r.method} {r.path}" for r in forbidden if r.job_id == job_id] + unattributed,
                keyed_downloads=sum(
                    1 for r in records if r.job_id == job_id and r.authorized and not r.path.startswith("/api/")
                ),
                foreign_places=foreign.get(index, []) + foreign.get(None, []),
                file_problems=files,
                triggerer_problems=triggerer,
                others=(sum(1 for i in others if views[i].state == "success"), len(others)),
                paid=submissions.get(job.fingerprint, 0) if job is not None else 0,
                jobs=sum(1 for other in jobs.values() if other.prompt == self.prompt(index)),
                view=self.views.get(index),
            )
            verdict = judge(evidence)
            verdicts.append(verdict)
            row.count_task(verdict.problems, expect_success=expected.stores_clip, where=f"{index} {verdict.case}")
        self.summarize(row, lab, verdicts, egress, forbidden, submissions, jobs)
        return row

    def summarize(
        self,
        row: Row,
        lab: Lab,
        verdicts: list[CaseVerdict],
        egress: list[str],
        forbidden: list[Any],
        submissions: Mapping[str, int],
        jobs: Mapping[str, Any],
    ) -> None:
        assert self.service is not None
        row.submissions = sum(submissions.values())
        row.jobs = len(jobs)
        row.duplicates = sum(count - 1 for count in submissions.values() if count > 1)
        row.check(row.submissions == self.count, f"{row.submissions} paid submissions for {self.count} tasks")
        # The bomb is served on the first polls of its job, so other renders are still waiting then: how many of
        # them the triggerer polled after the last bomb says it went on with them (their success is checked per case).
        bombs = [r.at for r in self.service.records() if r.note == "gzip bomb"]
        row.check(len(bombs) == BOMB_POLLS, f"the gzip bomb was served {len(bombs)} times, expected {BOMB_POLLS}")
        bomb_jobs = {job.job_id for job in jobs.values() if job.case == "gzip_bomb"}
        polled_after = {
            r.job_id
            for r in self.service.records()
            if bombs and r.path == "/api/status" and r.at > bombs[-1] and r.job_id not in bomb_jobs
        }
        row.facts["cases passed"] = f"{sum(v.passed for v in verdicts)}/{len(verdicts)}"
        row.facts["refused connects (egress guard)"] = len(egress)
        row.facts["requests at 127.0.0.2"] = len(forbidden)
        row.facts["other jobs polled after the last bomb"] = len(polled_after)
        peak = max(self.triggerer_rss, default=0) - (self.triggerer_rss[0] if self.triggerer_rss else 0)
        row.facts["triggerer memory growth"] = f"{peak / 2**20:.0f} MiB"
        row.facts["bytes sent of the endless stream before the hang-ups"] = sum(
            r.sent for r in self.service.records() if r.note.startswith("endless")
        )
        guard = self.guard_evidence(lab)
        row.facts["egress guard loaded in"] = ", ".join(name for name, ok in guard.items() if ok) or "nothing"
        for name, ok in guard.items():
            row.check(ok, f"the egress guard is not loaded in the {name}")
        row.details["cases"] = [
            {
                "index": v.index,
                "case": v.case,
                "label": v.label,
                "sees": v.sees,
                "cells": v.cells,
                "problems": v.problems,
            }
            for v in verdicts
        ]
        row.details["egress_refused"] = egress
        row.details["forbidden_requests"] = [f"{r.method} {r.path}" for r in forbidden]

    def guard_evidence(self, lab: Lab) -> dict[str, bool]:
        """Whether every component (its main process) and the task runners installed the egress guard."""
        loaded: set[int] = set()
        if self.guard_log is not None:
            path = Path(egress_guard.loaded_log(str(self.guard_log)))
            for line in path.read_text().splitlines() if path.exists() else []:
                pid = line.split(" ", 1)[0].removeprefix("pid=")
                if pid.isdigit():
                    loaded.add(int(pid))
        seen = {}
        for name in ("api-server", "execution-api", "scheduler", "dag-processor", "triggerer"):
            pids = lab.cluster.pids(name)
            seen[name] = bool(pids) and pids[0] in loaded
        guard = lab.xcom(TaskKey(self.dag_id, self.run_id, "hostile_cases", -1), "egress_guard")
        seen["task runner"] = isinstance(guard, str) and guard.startswith(str(self.home / "site"))
        return seen
