"""The embedded stack, with one child at a time killed, stopped and started again.

:class:`FaultStack` is :class:`~cxrwatch.embedded.stack.Stack` that remembers
how it started each child (command line and environment), so a child killed
with SIGKILL or stopped with SIGTERM can be started again exactly as before,
in its own process group, appending to the same log.
"""

import contextlib
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field

from cxrwatch.embedded.stack import SERVICES, Stack, _Child

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """How a child was started."""

    argv: list[str]
    env: dict[str, str]


@dataclass
class FaultStack(Stack):
    """A stack whose children can be killed and started again one by one."""

    launches: dict[str, Launch] = field(default_factory=dict)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> _Child:
        self.launches[name] = Launch(list(argv), dict(env))
        return super()._spawn(name, argv, env)

    def pid(self, name: str) -> int:
        """Process id of the running child ``name``."""
        return self._child(name).process.pid

    def alive(self, name: str) -> bool:
        """True while the child ``name`` runs."""
        return self._child(name).process.poll() is None

    def kill(self, name: str) -> None:
        """SIGKILL the child's whole process group, as a node failure would."""
        child = self._child(name)
        os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
        logger.info("killed %s (pid %d) with SIGKILL", name, child.process.pid)

    def terminate(self, name: str, timeout_s: float = 30.0) -> tuple[int, float]:
        """SIGTERM the child's main process, as an orchestrator does, and wait.

        Returns its exit code (negative: the signal that ended it) and how long
        it took. A child still running after ``timeout_s`` is killed, and so is
        anything left in its process group.
        """
        return self.terminate_all([name], timeout_s)[name]

    def terminate_all(
        self, names: Iterable[str], timeout_s: float = 30.0
    ) -> dict[str, tuple[int, float]]:
        """SIGTERM several children at once; exit code and seconds of each."""
        started = time.monotonic()
        children = [self._child(name) for name in names]
        for child in children:
            os.kill(child.process.pid, signal.SIGTERM)
        stopped: dict[str, tuple[int, float]] = {}
        for child in children:
            left = max(0.1, timeout_s - (time.monotonic() - started))
            try:
                code = child.process.wait(timeout=left)
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
                code = child.process.wait()
            stopped[child.name] = (code, time.monotonic() - started)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
        return stopped

    def start_again(self, name: str) -> None:
        """Start the child ``name`` again as it was first started."""
        old = self._child(name)
        if old.process.poll() is None:
            raise RuntimeError(f"{name} still runs (pid {old.process.pid})")
        launch = self.launches[name]
        new = super()._spawn(name, launch.argv, launch.env)
        self.children.remove(new)
        self.children[self.children.index(old)] = new

    def ready_url(self, name: str) -> str:
        """The URL that answers 200 once the child ``name`` is ready."""
        if name in SERVICES:
            return f"http://127.0.0.1:{self.health_port(name)}/readyz"
        if name == "api":
            return f"{self.api_url}/healthz"
        if name == "triton":
            port = self.settings.triton_http_port
            return f"http://127.0.0.1:{port}/v2/health/ready"
        raise KeyError(f"no readiness URL for {name!r}")

    def is_ready(self, name: str) -> bool:
        """True when the child answers its readiness URL with 200."""
        try:
            url = self.ready_url(name)
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, name: str, timeout_s: float = 120.0) -> float:
        """Wait until the child is ready; return the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if not self.alive(name):
                raise RuntimeError(f"{name} exited; see {self._child(name).log}")
            if self.is_ready(name):
                return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"{name} was not ready after {timeout_s:.0f} s")

    def _child(self, name: str) -> _Child:
        for child in self.children:
            if child.name == name:
                return child
        raise KeyError(f"the stack started no {name!r}")
