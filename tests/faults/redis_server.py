"""A private, persistent redis-server that the fault suite may stop and start.

The machine's own Redis (port 6379) is never touched: this one listens on a
free loopback port, keeps an append-only file in its own folder, and comes
back from a stop with every acknowledged write (``appendfsync always``).
"""

import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.servers import free_port, wait_port

logger = logging.getLogger(__name__)


class PrivateRedis:
    """One redis-server process on a port of its own, restartable with its data."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the server process lives."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server on its port and data folder; wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "the fault suite needs redis-server (apt-get install redis-server)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ]
        with (self.folder / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_port(self.port, 15)
        self._wait_loaded()
        logger.info("private redis-server on port %d (pid %d)", self.port, self.pid)

    @property
    def pid(self) -> int:
        """Process id of the running server."""
        if self._process is None:
            raise RuntimeError("the private Redis is not started")
        return self._process.pid

    def stop(self, timeout_s: float = 15.0) -> None:
        """Shut the server down cleanly (SIGTERM: it flushes the AOF first)."""
        if not self.running or self._process is None:
            return
        os.kill(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("redis-server ignored SIGTERM for %.0f s", timeout_s)
            os.kill(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def _wait_loaded(self, timeout_s: float = 30.0) -> None:
        """Wait until the append-only file is loaded and commands are served."""
        client = redis.Redis(port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:  # refused, or still loading
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on {self.port} did not load")
                time.sleep(0.1)
        finally:
            client.close()
