"""schemathesis hooks for .ci/schemathesis.sh.

A long poll's wait (`wait_ms` of POST /api/v1/fetch) is the worker's own choice of how
long to hold a request open, not an input whose handling varies: a generated fetch
waits at most 50 ms, so the run stays short. Values outside the documented range are
left alone, so the negative cases still reach kyu and are refused.
"""

import schemathesis


@schemathesis.hook
def map_body(context, body):
    op = getattr(context, "operation", None)
    if op is None or not str(getattr(op, "path", "")).endswith("/fetch"):
        return body
    if isinstance(body, dict):
        wait = body.get("wait_ms")
        number = isinstance(wait, (int, float)) and not isinstance(wait, bool)
        if number and 50 < wait <= 30000:
            body["wait_ms"] = 50 if isinstance(wait, int) else 50.0
    return body
