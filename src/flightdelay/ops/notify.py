"""Post one message to a Slack-compatible webhook: ``flightdelay notify --webhook-env NAME --text``.

The URL is read from the environment variable NAME (a CI secret), never from the command line, and
messages name only its scheme, host and port: a webhook URL's path is its credential. An empty or
unset variable is no error: no secret, nothing to send. The body is ``{"text": ...}``; a server
error or an unreachable URL is tried once more, then reported in one line (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from http import HTTPStatus
from urllib.parse import urlsplit

from flightdelay.core.errors import StageError
from flightdelay.core.io import run_main

log = logging.getLogger(__name__)

#: seconds to wait for the webhook to answer, per attempt
TIMEOUT_S = 10.0
#: seconds between the first attempt and the retry
RETRY_DELAY_S = 2.0
ATTEMPTS = 2


class _Retryable(StageError):
    """A failure that another attempt may not meet: a 5xx or 429, a refused or timed-out call."""


def where(url: str) -> str:
    """``scheme://host:port`` of a URL: enough to say which server, without the secret path.

    Raises:
        StageError: the URL is not http(s) or has no host.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise StageError("the webhook URL is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{parts.hostname}:{port}"


def _send(url: str, body: bytes, timeout: float) -> int:
    """One POST; its status, or the failure as an error that says whether a retry may help."""
    server = where(url)  # only http(s) reaches urlopen
    request = urllib.request.Request(  # noqa: S310 - scheme checked by where()
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the request checked above
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        retry = (
            exc.code >= HTTPStatus.INTERNAL_SERVER_ERROR or exc.code == HTTPStatus.TOO_MANY_REQUESTS
        )
        error = _Retryable if retry else StageError
        raise error(f"the webhook at {server} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"the webhook at {server} is unreachable: {reason}") from exc
    if not HTTPStatus.OK <= status < HTTPStatus.MULTIPLE_CHOICES:
        raise StageError(f"the webhook at {server} answered HTTP {status}, not 2xx")
    return status


def post(url: str, text: str, timeout: float = TIMEOUT_S, delay: float | None = None) -> int:
    """POST ``{"text": text}`` to ``url``, once more after ``delay`` s on a retryable failure.

    Returns:
        The HTTP status of the answer (2xx).

    Raises:
        StageError: the last attempt's failure, naming the server and the status or the reason.
    """
    body = json.dumps({"text": text}).encode("utf-8")
    pause = RETRY_DELAY_S if delay is None else delay
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _send(url, body, timeout)
        except _Retryable as exc:
            if attempt == ATTEMPTS:
                raise StageError(f"{exc} (after {ATTEMPTS} attempts)") from exc
            log.warning("%s: retrying in %.0f s", exc, pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flightdelay notify", description=__doc__)
    parser.add_argument(
        "--webhook-env", required=True, metavar="NAME", help="environment variable with the URL"
    )
    parser.add_argument("--text", required=True, help="the message")
    args = parser.parse_args(argv)

    def body() -> None:
        url = os.environ.get(args.webhook_env, "").strip()
        if not url:
            log.info("%s is not set: no webhook, nothing to send", args.webhook_env)
            return
        if not args.text.strip():
            raise StageError("--text is empty: nothing to say")
        status = post(url, args.text)
        log.info("posted to the webhook at %s (HTTP %d)", where(url), status)

    return run_main("notify", body)


if __name__ == "__main__":
    raise SystemExit(main())
