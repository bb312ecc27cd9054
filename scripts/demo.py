"""
`make demo`: start the HappyHorse emulator, run the daily content DAG with `airflow dags test` against
it (the trigger runs inline), and show the MP4 it stored. Everything lives under .demo/ and output/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import av

from happyhorse_emulator import EmulatorConfig, EmulatorProcess

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "happyhorse_daily_content"


def airflow_env(base_url: str, api_key: str, home: Path, output: Path) -> dict[str, str]:
    connection = {"conn_type": "happyhorse", "host": base_url, "password": api_key}
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags" / "examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_HAPPYHORSE_DEFAULT": json.dumps(connection),
        "HAPPYHORSE_OUTPUT_ROOT": f"file://{output}",
        # The emulator renders 20x faster than the service: poll on its time scale.
        "HAPPYHORSE_FIRST_POLL_AFTER": "2",
        "HAPPYHORSE_POLL_INTERVAL": "1",
        "HAPPYHORSE_IMAGE_BASE_URL": f"{base_url}/_emulator/images",
    }


def main() -> int:
    home = REPO / ".demo" / "airflow"
    output = REPO / "output"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    logical_date = date.today().isoformat()
    # The DAG makes a day's clip once (if_exists="skip"): the demo renders today's again, so it removes the
    # clip it made before, with its poster and record.
    clip = output / "daily" / f"{logical_date}.mp4"
    poster = clip.with_name(f"{clip.stem}.poster.jpg")
    for made in (clip, poster, clip.with_name(f"{clip.name}.happyhorse.json")):
        made.unlink(missing_ok=True)
    with EmulatorProcess(EmulatorConfig(speed=0.05, seed=7), log_file=REPO / ".demo" / "emulator.log") as emulator:
        print(f"HappyHorse emulator running at {emulator.base_url}")
        env = airflow_env(emulator.base_url, emulator.api_key, home, output)
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"Running `airflow dags test {DAG_ID} {logical_date}` ...")
        run = subprocess.run([airflow, "dags", "test", DAG_ID, logical_date], env=env, check=False)
        stats = emulator.stats()
    if run.returncode != 0 or not clip.exists():
        print(f"The DAG run failed (exit {run.returncode}); see the output above.", file=sys.stderr)
        return 1
    with av.open(str(clip)) as container:
        video = container.streams.video[0]
        seconds = float(container.duration or 0) / av.time_base
        audio = "with audio" if container.streams.audio else "no audio"
        shape = f"{video.codec_context.width}x{video.codec_context.height}"
    print()
    print(f"Video stored at: {clip}")
    print(f"  {seconds:.1f} s, {shape}, {audio}, {clip.stat().st_size} bytes; poster frame at {poster}")
    submissions, polls = stats["submissions"]["total"], stats["status_calls"]["total"]
    print(f"  emulator: {submissions} paid submission(s), {polls} status call(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
