"""
Settings shared by the example DAGs. Production defaults; the demo and the end-to-end tests point them
at the local emulator (which renders much faster) through environment variables. Reading environment
variables is not I/O: these DAG files stay cheap to parse. (This module names no scheduler, so the
DAG processor does not parse it as a DAG file.)
"""

from __future__ import annotations

import os

# Where clips are stored: any object storage URI (file://, s3://, gs://...).
OUTPUT_ROOT = os.environ.get("HAPPYHORSE_OUTPUT_ROOT", "file:///tmp/happyhorse")
# Poll schedule: None means "near the expected render time for the request" for the first poll.
FIRST_POLL_AFTER = (
    float(os.environ["HAPPYHORSE_FIRST_POLL_AFTER"]) if "HAPPYHORSE_FIRST_POLL_AFTER" in os.environ else None
)
POLL_INTERVAL = float(os.environ.get("HAPPYHORSE_POLL_INTERVAL", "2"))
# Images for the image-to-video and multi-shot examples (the emulator serves test images of any size).
IMAGE_BASE_URL = os.environ.get("HAPPYHORSE_IMAGE_BASE_URL", "https://example.com/images")

POLLING = {"first_poll_after": FIRST_POLL_AFTER, "poll_interval": POLL_INTERVAL}
