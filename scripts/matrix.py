"""
The test matrix: every Python the package claims, each in a fresh virtualenv with the built wheel (never an
editable install) and the newest dependencies; one leg with the lowest versions the metadata allows; one leg
installed from the sdist, running the sdist's own tests. Each leg runs the unit tests without the emulator
installed (the provider must not need it), then installs the emulator (its own distribution, emulator/, from its
wheel) and runs one real ``airflow dags test`` against it. The sdist and the wheels are built once and checked with
twine.

    .venv/bin/python scripts/matrix.py                 # every leg (make test-matrix; CI)
    .venv/bin/python scripts/matrix.py --legs 3.12     # some legs
    .venv/bin/python scripts/matrix.py --table-only    # the compatibility table from the last results

Writes ``.matrix/results.json`` and prints the compatibility table (Python x Airflow minor) made from it;
``--write-table`` also writes it to ``docs/compatibility.md``. Exits 1 when a leg fails or a claimed
interpreter is missing.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / ".matrix"
RESULTS = WORK / "results.json"
TABLE = REPO / "docs" / "compatibility.md"
UV = Path(sys.executable).with_name("uv")
# What the unit tests need beside the package's own dev extra (requirements/dev.in has them too).
TEST_EXTRAS = ["apache-airflow-providers-amazon[s3fs]", "apache-airflow-providers-openlineage", "statsd"]
# Airflow 3.0.x declares no upper bound on these, but works only with the versions it was released with
# (requirements/floor.in says how each breaks): Airflow's own constraints files pin them, and so does the
# lowest leg, as Airflow's installation guide asks of every install.
AIRFLOW_30_CONSTRAINTS = ["universal-pathlib<0.3", "fastapi<0.117", "cadwyn<6", "cryptography<51"]
# Run before the emulator is installed, then after.
UNIT_SUITES = ["tests/unit"]
EMULATOR_SUITES = ["tests/integration/test_dags_test.py"]
PASSED = re.compile(r"(\d+) passed")
FAILED = re.compile(r"(\d+) (failed|error)")


@dataclass
class Leg:
    name: str
    python: str  # the minor version, e.g. "3.12"
    source: str  # "wheel" or "sdist"
    resolution: str = "highest"
    ok: bool = False
    passed: int = 0
    failed: int = 0
    seconds: float = 0.0
    interpreter: str = ""
    airflow: str = ""
    versions: dict[str, str] | None = None
    problem: str = ""


def claimed_pythons() -> list[str]:
    """Every Python minor ``requires-python`` admits (``>=3.11,<3.14`` -> 3.11, 3.12, 3.13)."""
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.search(r">=\s*3\.(\d+)", spec)
    high = re.search(r"<\s*3\.(\d+)", spec)
    if low is None or high is None:
        raise SystemExit(f"requires-python {spec!r}: expected the form '>=3.X,<3.Y'")
    return [f"3.{minor}" for minor in range(int(low.group(1)), int(high.group(1)))]


def interpreter(minor: str) -> str | None:
    """pyenv's newest 3.X, else ``python3.X`` on PATH; one that answers to ``--version`` (a pyenv shim may not)."""
    candidates = sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{minor}.*/bin/python{minor}")), key=_version_key
    )
    candidates.reverse()
    if found := shutil.which(f"python{minor}"):
        candidates.append(found)
    for candidate in candidates:
        if run([candidate, "--version"]).stdout.startswith(f"Python {minor}."):
            return candidate
    return None


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]


def build() -> tuple[Path, Path, Path]:
    """The provider's sdist and wheel, and the emulator's wheel (``emulator/``), each twine-checked."""
    dist = WORK / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    for source, kinds, into in (
        (REPO, ["--sdist", "--wheel"], dist),
        (REPO / "emulator", ["--wheel"], dist / "emulator"),
    ):
        done = run([str(UV), "build", "-q", *kinds, "-o", str(into), str(source)])
        if done.returncode != 0:
            raise SystemExit(f"uv build of {source} failed:\n{done.stderr}")
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    [emulator] = (dist / "emulator").glob("*.whl")
    checked = run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist), str(emulator)])
    print(checked.stdout.strip())
    if checked.returncode != 0:
        raise SystemExit(f"twine check failed:\n{checked.stdout}{checked.stderr}")
    return wheel, sdist, emulator


def run_leg(leg: Leg, wheel: Path, sdist: Path, emulator: Path) -> Leg:
    began = time.monotonic()
    path = interpreter(leg.python)
    if path is None:
        leg.problem = f"no Python {leg.python} on this machine (python{leg.python} on PATH or pyenv)"
        return leg
    leg.interpreter = path
    root = WORK / leg.name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    venv = root / "venv"
    python = venv / "bin" / "python"
    tests_from = REPO
    package = f"{wheel}[dev]"
    if leg.source == "sdist":
        with tarfile.open(sdist) as archive:
            archive.extractall(root, filter="data")
        [tests_from] = [path for path in root.iterdir() if path.is_dir() and path.name != "venv"]
        package = f"{sdist}[dev]"
    steps = [[str(UV), "venv", "-q", "-p", path, str(venv)]]
    install = [str(UV), "pip", "install", "-q", "-p", str(python)]
    keep: list[str] = []  # the lowest leg installs the emulator without moving what it chose
    if leg.resolution != "highest":
        # The package's own dependencies as the direct ones, at the lowest versions its metadata allows; then
        # the package and the test tools without moving any of them.
        runtime = root / "runtime.txt"
        runtime.write_text("\n".join(_dependencies()))
        constraints = root / "airflow-constraints.txt"
        constraints.write_text("\n".join(AIRFLOW_30_CONSTRAINTS) + "\n")
        steps.append([*install, "--resolution", leg.resolution, "-r", str(runtime), "-c", str(constraints)])
        steps.append(["pin", str(root / "installed.txt")])
        steps.append([*install, package, *TEST_EXTRAS, "-c", str(root / "installed.txt")])
        keep = ["-c", str(root / "installed.txt")]
    else:
        steps.append([*install, package, *TEST_EXTRAS])
    for step in steps:
        if step[0] == "pin":  # the package's dependencies stay at what the lowest resolution chose
            names = {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower() for spec in _dependencies()}
            frozen = run([str(UV), "pip", "freeze", "-p", str(python)]).stdout.splitlines()
            Path(step[1]).write_text("\n".join(line for line in frozen if line.split("==")[0].lower() in names))
            continue
        done = run(step)
        if done.returncode != 0:
            leg.problem = f"{' '.join(step[:3])} failed: {done.stderr.strip()[-2000:]}"
            return leg
    env = {
        **os.environ,
        "HAPPYHORSE_TEST_INSTALLED": "1",  # tests/conftest.py: the package must come from site-packages
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
    }
    env.pop("VIRTUAL_ENV", None)
    log = root / "pytest.log"
    log.write_text("")
    # The unit tests first, with no emulator in the venv: neither the provider nor its test tools may bring it, and
    # the unit tests must not need it. Then the emulator from its wheel, and the run against it.
    has_emulator = [str(python), "-c", "import importlib.util; print(importlib.util.find_spec('happyhorse_emulator'))"]
    if (found := run(has_emulator)).stdout.strip() != "None":
        leg.problem = f"the emulator is installed before its step: {found.stdout.strip() or found.stderr[-500:]}"
    for suites, before in ((UNIT_SUITES, None), (EMULATOR_SUITES, [*install, str(emulator), *keep])):
        if leg.problem:
            break
        if before is not None and (done := run(before)).returncode != 0:
            leg.problem = f"installing the emulator failed: {done.stderr.strip()[-2000:]}"
            break
        tests = [str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "-o", "pythonpath=tests", *suites]
        done = run(tests, cwd=tests_from, env=env)
        with log.open("a") as written:
            written.write(done.stdout + done.stderr)
        tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        passed = int(match.group(1)) if (match := PASSED.search(tail)) else 0
        leg.passed += passed
        leg.failed += sum(int(failed.group(1)) for failed in FAILED.finditer(tail))
        if done.returncode != 0 or passed == 0:
            leg.problem = f"pytest {' '.join(suites)}: {tail or done.stderr.strip()[-500:]} (log: {log})"
    leg.ok = not leg.problem
    listed = json.loads(run([str(UV), "pip", "list", "-p", str(python), "--format", "json"]).stdout)
    leg.versions = {item["name"].lower(): item["version"] for item in listed}
    leg.airflow = leg.versions.get("apache-airflow", "")
    leg.seconds = round(time.monotonic() - began, 1)
    return leg


def _dependencies() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def legs_for(pythons: list[str]) -> list[Leg]:
    legs = [Leg(f"py{minor}", minor, "wheel") for minor in pythons]
    lowest = "3.11" if "3.11" in pythons else pythons[0]
    legs.append(Leg(f"py{lowest}-lowest", lowest, "wheel", resolution="lowest-direct"))
    legs.append(Leg(f"py{pythons[-1]}-sdist", pythons[-1], "sdist"))
    return legs


def table(legs: list[Leg], when: str) -> str:
    """Python x Airflow minor: which combinations a leg passed (the floor leg of make test-floor is its own row)."""
    minors = sorted({".".join(leg.airflow.split(".")[:2]) for leg in legs if leg.airflow}, key=_version_key)
    pythons = sorted({leg.python for leg in legs}, key=_version_key)
    lines = [
        "# Compatibility",
        "",
        f"Made by `scripts/matrix.py` from its run of {when} (`make test-matrix`, part of CI). A cell names the legs",
        "that ran that Python with that Airflow minor: the unit tests (without the emulator installed) and one real",
        "`airflow dags test` against the emulator, in a fresh virtualenv with the built wheel (or the sdist) and the",
        "emulator's wheel. `newest`: the newest dependencies; `lowest`: `uv --resolution lowest-direct`, the floors",
        "of `pyproject.toml`; `sdist`: installed from the sdist, running its own tests. Airflow 3.0 is also tested by",
        "`make test-floor` (Python 3.11, Airflow 3.0.6).",
        "",
        "| Python | " + " | ".join(f"Airflow {minor}" for minor in minors) + " |",
        "|---|" + "---|" * len(minors),
    ]
    for python in pythons:
        cells = []
        for minor in minors:
            here = [leg for leg in legs if leg.python == python and leg.airflow.startswith(minor + ".")]
            cells.append(", ".join(_cell(leg) for leg in here) or "not tested")
        lines.append(f"| {python} | " + " | ".join(cells) + " |")
    lines += ["", "| leg | interpreter | Airflow | result | seconds |", "|---|---|---|---|---|"]
    for leg in legs:
        result = f"{leg.passed} passed" if leg.ok else f"FAILED: {' '.join(leg.problem.split())[:200]}"
        shown = Path(leg.interpreter).name or "-"
        lines.append(f"| {leg.name} | {shown} | {leg.airflow or '-'} | {result} | {leg.seconds} |")
    return "\n".join(lines) + "\n"


def _cell(leg: Leg) -> str:
    kind = "sdist" if leg.source == "sdist" else ("lowest" if leg.resolution != "highest" else "newest")
    return f"{kind} {'passed' if leg.ok else 'FAILED'} ({leg.airflow})"


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--legs", nargs="*", help="leg names or Python minors to run (default: all)")
    parser.add_argument("--table-only", action="store_true", help="print the table from the last results")
    parser.add_argument("--write-table", action="store_true", help=f"also write {TABLE.relative_to(REPO)}")
    args = parser.parse_args()
    if args.table_only:
        saved = json.loads(RESULTS.read_text())
        text = table([Leg(**leg) for leg in saved["legs"]], saved["when"])
    else:
        pythons = claimed_pythons()
        legs = legs_for(pythons)
        if args.legs:
            legs = [leg for leg in legs if leg.name in args.legs or leg.python in args.legs]
        WORK.mkdir(exist_ok=True)
        wheel, sdist, emulator = build()
        for leg in legs:
            print(f"leg {leg.name}: Python {leg.python}, {leg.source}, {leg.resolution} ...", flush=True)
            run_leg(leg, wheel, sdist, emulator)
            print(
                f"leg {leg.name}: {'passed' if leg.ok else 'FAILED'} {leg.passed} passed, {leg.failed} failed, "
                f"Airflow {leg.airflow or '-'}, {leg.seconds} s {leg.problem}",
                flush=True,
            )
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        RESULTS.write_text(json.dumps({"when": when, "legs": [asdict(leg) for leg in legs]}, indent=2))
        text = table(legs, when)
        if not all(leg.ok for leg in legs):
            print(text)
            return 1
    print(text)
    if args.write_table:
        TABLE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
