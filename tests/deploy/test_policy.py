"""Policies every rendered workload follows, and settings that match the code.

* every container, init containers included, runs as a non-root user without
  privilege escalation or capabilities, on a read-only root filesystem, with
  CPU and memory requests and limits, from an image pinned by tag or digest
  (never ``latest``); every main container has liveness and readiness probes;
* every ``CXRWATCH_*`` variable a service container gets is a field of that
  service's settings class, every required field is set, and the settings
  class accepts the values (with the Secrets create-secrets.sh makes).
"""

import os
import tomllib

import pytest
from pydantic import ValidationError

from tests.deploy.manifests import (
    OVERLAYS,
    REPO,
    SERVICES,
    STREAM_SERVICES,
    containers,
    environment,
    named,
    of_kind,
    pod_specs,
    rendered,
    service_container,
)
from tests.deploy.secrets_script import ScriptRun
from tests.deploy.service_code import NotWrittenYet, settings_class

PREFIX = "CXRWATCH_"


def all_containers(overlay: str):
    for workload, pod_spec in pod_specs(rendered(overlay)):
        for role, container in containers(pod_spec):
            yield f"{workload}/{container['name']}", role, pod_spec, container


def effective(pod_spec: dict, container: dict, field: str):
    """A securityContext field, the container's overriding the pod's."""
    container_context = container.get("securityContext", {})
    if field in container_context:
        return container_context[field]
    return pod_spec.get("securityContext", {}).get(field)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_run_unprivileged(overlay: str) -> None:
    for name, _, pod_spec, container in all_containers(overlay):
        assert effective(pod_spec, container, "runAsNonRoot") is True, name
        assert effective(pod_spec, container, "runAsUser") not in (None, 0), name
        context = container.get("securityContext", {})
        assert context.get("allowPrivilegeEscalation") is False, name
        assert context.get("readOnlyRootFilesystem") is True, name
        assert context.get("capabilities", {}).get("drop") == ["ALL"], name
        assert context.get("privileged") in (None, False), name
        assert pod_spec.get("hostNetwork") in (None, False), name
    for _, pod_spec in pod_specs(rendered(overlay)):
        seccomp = pod_spec["securityContext"].get("seccompProfile", {})
        assert seccomp.get("type") == "RuntimeDefault"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_have_requests_and_limits(overlay: str) -> None:
    for name, _, _, container in all_containers(overlay):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources.get(bound, {}).keys(), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_main_containers_have_probes(overlay: str) -> None:
    for name, role, _, container in all_containers(overlay):
        if role == "main":
            assert "livenessProbe" in container, name
            assert "readinessProbe" in container, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(overlay: str) -> None:
    for name, _, _, container in all_containers(overlay):
        image = container["image"]
        reference = image.rsplit("/", 1)[-1]
        assert "@sha256:" in image or ":" in reference, f"{name}: {image} has no tag"
        assert not reference.endswith(":latest"), f"{name}: {image}"
        assert container.get("imagePullPolicy") != "Always", name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_own_images_carry_the_project_version(overlay: str) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]

    for name, _, _, container in all_containers(overlay):
        if container["image"].startswith("cxrwatch/"):
            assert container["image"].endswith(f":{version}"), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaled_deployments_leave_replicas_to_the_autoscaler(overlay: str) -> None:
    manifests = rendered(overlay)
    scaled = {
        s["spec"]["scaleTargetRef"]["name"] for s in of_kind(manifests, "ScaledObject")
    }
    scaled |= {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }

    for name in scaled:
        assert "replicas" not in named(manifests, "Deployment", name)["spec"], name


def test_production_scales_every_consumer_and_the_api() -> None:
    manifests = rendered("prod")
    scaled = {
        s["spec"]["scaleTargetRef"]["name"] for s in of_kind(manifests, "ScaledObject")
    }
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(manifests, "HorizontalPodAutoscaler")
    }

    assert scaled == {f"cxrwatch-{s}" for s in STREAM_SERVICES}
    assert hpas == {"cxrwatch-api"}


def test_production_protects_every_deployment_with_a_budget_and_spread() -> None:
    manifests = rendered("prod")
    budgets = of_kind(manifests, "PodDisruptionBudget")

    for deployment in of_kind(manifests, "Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        covering = [
            b
            for b in budgets
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(covering) == 1, deployment["metadata"]["name"]
        pod_spec = deployment["spec"]["template"]["spec"]
        assert "podAntiAffinity" in pod_spec.get("affinity", {})
        assert pod_spec.get("topologySpreadConstraints")


def test_triton_runs_on_gpu_nodes_with_a_gpu() -> None:
    triton = named(rendered("prod"), "Deployment", "cxrwatch-triton")
    pod_spec = triton["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]

    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod_spec["tolerations"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    (init,) = pod_spec["initContainers"]
    assert init["args"] == ["/models"]
    assert {"name": "CXRWATCH_TRITON_CONFIG", "value": "gpu"} in init["env"]


def test_dev_needs_no_gpu_and_scores_in_process() -> None:
    manifests = rendered("dev")
    scorer = environment(manifests, service_container(manifests, "scorer"))

    assert not [
        d
        for d in of_kind(manifests, "Deployment")
        if d["metadata"]["name"] == "cxrwatch-triton"
    ]
    assert scorer["CXRWATCH_BACKEND"] == "onnxruntime"
    assert "CXRWATCH_TRITON_URL" not in scorer


# ---- settings ---------------------------------------------------------------


def settings_or_skip(service: str):
    try:
        return settings_class(service)
    except NotWrittenYet as exc:
        pytest.skip(str(exc))


def resolved(variables: dict, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """Variables with Secret references replaced by create-secrets.sh's values."""
    values = {}
    for name, value in variables.items():
        if isinstance(value, dict):
            ref = value["secretKeyRef"]
            values[name] = secrets[ref["name"]][ref["key"]]
        else:
            values[name] = value
    return values


def settings_problems(
    service: str,
    variables: dict,
    secrets: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """Why ``service``'s settings class would refuse these variables."""
    settings = settings_or_skip(service)
    fields = {name.upper() for name in settings.model_fields}
    found = [
        f"{name} is no field of {settings.__name__}"
        for name in variables
        if name.removeprefix(PREFIX) not in fields
    ]
    found += [
        f"{PREFIX}{name.upper()} is required and not set"
        for name, field in settings.model_fields.items()
        if field.is_required() and PREFIX + name.upper() not in variables
    ]

    with monkeypatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(PREFIX)]:
            patch.delenv(name)
        for name, value in resolved(variables, secrets).items():
            patch.setenv(name, value)
        try:
            settings()
        except ValidationError as exc:
            found.append(f"{settings.__name__} refuses the values: {exc}")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", SERVICES)
def test_environment_matches_the_settings_class(
    service: str,
    overlay: str,
    generated_secrets: ScriptRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = rendered(overlay)
    variables = environment(manifests, service_container(manifests, service))

    assert (
        settings_problems(service, variables, generated_secrets.secrets, monkeypatch)
        == []
    )


@pytest.mark.parametrize(
    ("change", "culprit"),
    [
        ({"CXRWATCH_BATCH_MAX_RECORD": "8"}, "CXRWATCH_BATCH_MAX_RECORD is no field"),
        ({"CXRWATCH_BACKEND": "tritonn"}, "refuses the values"),
        ({"CXRWATCH_BATCH_MAX_RECORDS": "0"}, "refuses the values"),
    ],
)
def test_a_variable_the_settings_refuse_is_found(
    change: dict[str, str],
    culprit: str,
    generated_secrets: ScriptRun,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifests = rendered("prod")
    variables = environment(manifests, service_container(manifests, "scorer"))

    found = settings_problems(
        "scorer", variables | change, generated_secrets.secrets, monkeypatch
    )

    assert len(found) == 1 and culprit in found[0], found


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("service", STREAM_SERVICES)
def test_health_port_is_the_probed_and_scraped_port(service: str, overlay: str) -> None:
    manifests = rendered(overlay)
    container = service_container(manifests, service)
    variables = environment(manifests, container)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert int(variables["CXRWATCH_HEALTH_PORT"]) == ports["metrics"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    service_ports = named(manifests, "Service", f"cxrwatch-{service}")["spec"]["ports"]
    assert service_ports == [{"name": "metrics", "port": 9000, "targetPort": "metrics"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_listens_where_it_is_probed(overlay: str) -> None:
    manifests = rendered(overlay)
    container = service_container(manifests, "api")
    variables = environment(manifests, container)
    (port,) = container["ports"]

    assert variables["CXRWATCH_API_HOST"] == "0.0.0.0"
    assert int(variables["CXRWATCH_API_PORT"]) == port["containerPort"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_reads_the_model_repository_it_is_given(overlay: str) -> None:
    manifests = rendered(overlay)
    for service in STREAM_SERVICES:
        deployment = named(manifests, "Deployment", f"cxrwatch-{service}")
        pod_spec = deployment["spec"]["template"]["spec"]
        variables = environment(manifests, service_container(manifests, service))
        (init,) = pod_spec["initContainers"]

        assert init["image"].startswith("cxrwatch/model-repository:")
        assert init["args"][0] == variables["CXRWATCH_MODEL_REPOSITORY"] == "/models"
