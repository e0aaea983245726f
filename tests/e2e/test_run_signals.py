"""``cxrwatch run`` stops every process it started on SIGTERM and SIGHUP.

The stack's children run in sessions of their own (so that Ctrl-C in the
terminal reaches only the command, which then stops them in order); a
signal that is not Ctrl-C must end them the same way, or they outlive the
command and hold its ports.
"""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cxrwatch.embedded.stack import SERVICES

from tests.servers import REPO, free_port, free_run, running

pytestmark = pytest.mark.e2e

STARTED = re.compile(r"started (\w+) \(pid (\d+)\)")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_signal_stops_every_child(signum: signal.Signals, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CXRWATCH_EMBEDDED_RUN_DIR": str(tmp_path),
        "CXRWATCH_EMBEDDED_REDIS_PREFIX": f"cxr-signal-{uuid.uuid4().hex[:8]}",
        "CXRWATCH_EMBEDDED_REDIS_DB": "4",
        "CXRWATCH_EMBEDDED_KAFKA_PORT": str(free_port()),
        "CXRWATCH_EMBEDDED_TRITON_HTTP_PORT": str(free_port()),
        "CXRWATCH_EMBEDDED_TRITON_GRPC_PORT": str(free_port()),
        "CXRWATCH_EMBEDDED_TRITON_METRICS_PORT": str(free_port()),
        "CXRWATCH_EMBEDDED_API_PORT": str(free_port()),
        "CXRWATCH_EMBEDDED_HEALTH_BASE_PORT": str(free_run(len(SERVICES))),
    }
    command = subprocess.Popen(
        [str(Path(sys.executable).parent / "cxrwatch"), "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: dict[str, int] = {}
    try:
        assert command.stderr is not None
        # The API is the last child started: every other one runs by then.
        for line in command.stderr:
            if match := STARTED.search(line):
                children[match[1]] = int(match[2])
            if "api" in children:
                break
        assert {"broker", "triton", "api", *SERVICES} <= children.keys(), children

        command.send_signal(signum)
        command.communicate(timeout=120)  # reads the rest of the log meanwhile
        code = command.returncode
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        for pid in children.values():
            if running(pid):
                os.killpg(pid, signal.SIGKILL)

    assert code == 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(map(running, children.values())):
        time.sleep(0.2)
    assert [name for name, pid in children.items() if running(pid)] == []
