"""Container HEALTHCHECK: exit 0 when the service answers ``/healthz``.

Stream services serve it on ``CXRWATCH_HEALTH_PORT``; the API on
``CXRWATCH_API_PORT``. The image has no curl, so the check is Python's own
HTTP client; it runs as the image's user and touches no file.
"""

import os
import sys
import urllib.error
import urllib.request


def health_url() -> str:
    """Address of this container's liveness endpoint."""
    port = os.environ.get("CXRWATCH_HEALTH_PORT", "0")
    if port in ("", "0"):
        port = os.environ.get("CXRWATCH_API_PORT", "8080")
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    """Probe once; a non-200 answer or no answer is unhealthy."""
    try:
        with urllib.request.urlopen(health_url(), timeout=3) as answer:  # noqa: S310
            return 0 if answer.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
