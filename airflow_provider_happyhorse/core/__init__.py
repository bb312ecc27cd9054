"""
Every decision about talking to HappyHorse, with no I/O. The hook and the trigger drive these flows
and only send requests and sleep (the shape of httpx's auth flows):

- :mod:`.settings`: what a connection resolves to (base URL, key, timeout, pool size, retry policy);
- :mod:`.requests`: the API's requests;
- :mod:`.responses`: reading answers, and mapping failures to the error tree;
- :mod:`.retries`: whether and how long to wait before sending a failed request again;
- :mod:`.flows`: the Send/Sleep protocol, one call (submit, status) and the connection check;
- :mod:`.schedule`: when to poll a job (the render-time model and the poll schedule);
- :mod:`.pacing`: the account's query limit, as a token bucket status polls wait for;
- :mod:`.wait`: the one wait for a job, driven by blocking mode, the trigger and the sensor's poke;
- :mod:`.record`: one render as a task knows it (``RenderRecord``): task state, trigger kwargs, the
  record kept beside a clip, and the XCom result.
- :mod:`.kill`: a killed deferred task's trigger: killed by a user or moved to another triggerer, and what
  its job's cancel did.
"""
