"""
The screenshots of the HappyHorse view (README.md and docs/view.md), made by the browser test (headless
Chromium on a real cluster and the emulator; `scripts/install-test-deps.sh` installs Chromium):

    .venv/bin/python scripts/ui_screenshots.py

It runs tests/browser/test_ui.py, whose tests take the screenshots on their way, then copies the view's
two into docs/images/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = {"07-happyhorse-view.png": "happyhorse-view.png", "06-clip-page.png": "happyhorse-clip-page.png"}


def main() -> int:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser/test_ui.py"], cwd=REPO
    )
    if run.returncode != 0:
        print("the browser test failed: no screenshots copied", file=sys.stderr)
        return run.returncode
    for made, name in SHOTS.items():
        shutil.copy(REPO / "test-artifacts" / "browser" / made, REPO / "docs" / "images" / name)
        print(f"docs/images/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
