"""
Every default and limit of the package, in one place. Connection extras, operator and sensor arguments
override the defaults; the limits are the API contract's (``docs/happyhorse-api.md``).
"""

from __future__ import annotations

from datetime import timedelta

# -- the service --------------------------------------------------------------------------------------
DEFAULT_BASE_URL = "https://happyhorse.app"
GENERATE_PATH = "/api/generate"
STATUS_PATH = "/api/status"
USER_AGENT = "airflow-provider-happyhorse"
# The connection check asks for the status of this made-up job (no job is created).
CHECK_JOB_ID = "airflow-connection-test"

# A job id from the service is used in file names, logs and URLs only when it matches this.
JOB_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}"

# -- the request's limits -------------------------------------------------------------------------------
# Each dialect takes its own prompt length (``core.dialects``): happyhorse.app at most 2500 characters,
# DashScope 5000, a CJK one counting two. The request model holds every prompt to the larger bound.
HAPPYHORSE_PROMPT_CHARS = 2500
DASHSCOPE_PROMPT_UNITS = 5000
MAX_PROMPT_CHARS = max(HAPPYHORSE_PROMPT_CHARS, DASHSCOPE_PROMPT_UNITS)
MIN_DURATION = 3
MAX_DURATION = 15

# -- one HTTP request (connection extras: timeout, max_connections) -------------------------------------
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds per request
DEFAULT_MAX_CONNECTIONS = 100  # the async pool shared by a triggerer's triggers

# -- what is read from the network (connection extras of the same names) ----------------------------------
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024  # one API answer, after decoding; more is a malformed answer
DEFAULT_MAX_DOWNLOAD_BYTES = 512 * 1024 * 1024  # one clip (a 15 s 1080p clip is tens of MB)
DEFAULT_DOWNLOAD_TIMEOUT = 600.0  # seconds for one whole download, on top of `timeout` per read

# -- retries of one call (connection extras of the same names). A retry is a request sent again after a
# failed one: a call with max_retries=4 sends at most 5 requests.
DEFAULT_MAX_RETRIES = 4  # status requests outside a wait
DEFAULT_SUBMIT_MAX_RETRIES = 3  # submissions, and only where no job can have been created
DEFAULT_RETRY_INITIAL_DELAY = 1.0
DEFAULT_RETRY_MAX_DELAY = 30.0
DEFAULT_MAX_RETRY_AFTER = 300.0  # a server's Retry-After is honoured up to this many seconds

# -- waiting for a job ------------------------------------------------------------------------------------
DEFAULT_RENDER_TIMEOUT = timedelta(hours=1)  # GenerateVideoOperator(timeout=...)
DEFAULT_MIN_POLL_INTERVAL = 2.0  # GenerateVideoOperator(poll_interval=...)
DEFAULT_MAX_POLL_INTERVAL = 120.0  # max_poll_interval of the operator and the sensor
# 404 right after submission can be eventual consistency on the service; only later is it final.
NOT_FOUND_GRACE = timedelta(seconds=30)
# A worker that waits (blocking mode, a poking sensor) says how a job is doing at most this often.
PROGRESS_LOG_INTERVAL = timedelta(minutes=1)
# Extra time the scheduler allows a deferred task beyond the trigger's own deadline (a backstop only).
DEFERRAL_GRACE = timedelta(minutes=5)

# A render-time model for the first poll: base + per second of video, pro and audio slower. Tuned on
# the contract's figures (a 5 s std clip with sound in about 40-60 s); users can override it.
RENDER_BASE_SECONDS = 20.0
RENDER_SECONDS_PER_VIDEO_SECOND = 3.0
RENDER_PRO_FACTOR = 1.5
RENDER_AUDIO_FACTOR = 1.2
# How far real renders stray from the model either way (the emulator's default jitter).
RENDER_SPREAD = 0.1
# Detection target: see a finished job within DETECTION_SLACK + DETECTION_SHARE x its render time.
DETECTION_SLACK = 2.0
DETECTION_SHARE = 0.1
# Under the account's query limit, a status poll that has waited this long for a token goes ahead of every poll
# that has waited less (``core.pacing``): the bound on the wait of a poll whose job is already past its target.
# The schedule's own longest gap between two polls (120 s): a shorter one would hand the tokens back to arrival
# order for much of a long rush of finishes (docs/reports/benchmarks.md, "The DashScope query limit").
QUERY_WAIT_LIMIT = DEFAULT_MAX_POLL_INTERVAL
# Jitter shortens each wait by up to this share, so jobs submitted together spread out.
POLL_JITTER = 0.1
# Polls end their waits on whole ticks of the wall clock: see PollSchedule.next_delay.
POLL_TICK = 1.0

# -- storing the clip -----------------------------------------------------------------------------------
CHUNK_SIZE = 1024 * 1024  # reading and writing clips
# A result URL may redirect (to a signed CDN URL) at most this many times.
MAX_RESULT_REDIRECTS = 5
# A clip's frames may be at most this large (width x height) to be read for its poster (8K UHD).
MAX_FRAME_PIXELS = 7680 * 4320
# Reading a clip's packets (the probe) stops with an error after this many seconds.
PROBE_TIMEOUT = 60.0
# How far a clip may stray from its request and still be the one asked for.
DURATION_TOLERANCE = 0.5  # seconds
ASPECT_TOLERANCE = 0.03  # relative, width / height against the requested aspect ratio
# verify_clip: "strict" fails on a mismatch, "warn" keeps the clip and says so, "off" compares nothing.
VERIFY_CLIP_MODES = ("strict", "warn", "off")
# on_expired: what a task does when the job's result URL expired and the clip was never stored.
ON_EXPIRED_MODES = ("fail", "regenerate")
# if_exists: what a task does when its destination already holds a clip.
IF_EXISTS_MODES = ("skip", "replace", "fail")
# A job's result URL answers for about a day after the job finished (the contract); the view says so.
RESULT_URL_LIFETIME = timedelta(days=1)
# The HappyHorse view: where its app is mounted in the api-server, and a page of the gallery.
UI_URL_PREFIX = "/happyhorse"
UI_PAGE_SIZE = 24
UI_STREAM_CHUNK = 256 * 1024

# The XCom keys a video task writes: its result, and its job id (pushed before waiting: the view and the
# CLI find a task's job by it, and a task's own later step reads it back).
XCOM_RESULT_KEY = "return_value"  # Airflow's XCOM_RETURN_KEY
XCOM_JOB_ID_KEY = "job_id"
# @task.happyhorse: the request its function returned, for the worker that finishes the task after deferral.
XCOM_REQUEST_KEY = "request"
