"""Every overlay renders with Kustomize and every resource fits its schema.

A schema check that accepts anything proves nothing, so the negative tests
inject an unknown field, through Kustomize, into each family of resources and
expect the check to name it.
"""

import copy
import os
import textwrap
from pathlib import Path

import pytest

from tests.deploy.manifests import K8S, OVERLAYS, kustomize_build, rendered
from tests.deploy.validation import KUBERNETES_VERSIONS, is_builtin, problems

NAMESPACES = {"dev": "cxrwatch-dev", "prod": "cxrwatch", "external-kafka": "cxrwatch"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_into_one_namespace(overlay: str) -> None:
    manifests = rendered(overlay)

    assert len(manifests) > 30
    keys = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(keys) == len(set(keys)), "a resource is defined twice"
    for manifest in manifests:
        assert manifest["metadata"].get("namespace") == NAMESPACES[overlay], keys


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_matches_its_schema(overlay: str, version: str) -> None:
    found = [p for m in rendered(overlay) for p in problems(m, version)]

    assert found == []


def test_overlays_use_custom_resources_of_every_schema() -> None:
    # Each hand-written schema is exercised by at least one rendered resource.
    used = {
        f"{m['apiVersion'].replace('/', '_')}_{m['kind']}.json"
        for overlay in OVERLAYS
        for m in rendered(overlay)
        if not is_builtin(m["apiVersion"])
    }
    schemas = {p.name for p in (Path(__file__).parent / "schemas").glob("*.json")}

    assert used == schemas


def overlay_with_patch(tmp_path: Path, target: str, patch: str) -> list[dict]:
    """Render prod with one extra JSON patch, as an operator's overlay would."""
    # Kustomize accepts only relative paths to another kustomization.
    prod = os.path.relpath(K8S / "overlays" / "prod", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        textwrap.dedent(
            f"""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            resources:
              - {prod}
            patches:
              - target: {target}
                patch: |-
            """
        )
        + textwrap.indent(textwrap.dedent(patch), " " * 6)
    )
    return kustomize_build(tmp_path)


INVALID_FIELDS = [
    pytest.param(
        "{kind: Deployment, name: cxrwatch-scorer}",
        """\
        - op: add
          path: /spec/template/spec/containers/0/imagePullPolcy
          value: Always
        """,
        "imagePullPolcy",
        id="Deployment: misspelt container field",
    ),
    pytest.param(
        "{kind: NetworkPolicy, name: cxrwatch-redis-ingress}",
        """\
        - op: add
          path: /spec/ingress/0/from/0/podSelecter
          value: {}
        """,
        "podSelecter",
        id="NetworkPolicy: misspelt peer selector",
    ),
    pytest.param(
        "{kind: KafkaTopic, name: dicom.instances.v1}",
        """\
        - op: add
          path: /spec/partition
          value: 24
        """,
        "partition",
        id="KafkaTopic: misspelt partitions",
    ),
    pytest.param(
        "{kind: KafkaUser, name: cxrwatch-scorer}",
        """\
        - op: add
          path: /spec/authorization/acls/0/operations/0
          value: ReadWrite
        """,
        "ReadWrite",
        id="KafkaUser: unknown ACL operation",
    ),
    pytest.param(
        "{kind: ScaledObject, name: cxrwatch-joiner}",
        """\
        - op: add
          path: /spec/triggers/0/metadata/lagTreshold
          value: "5"
        """,
        "lagTreshold",
        id="ScaledObject: misspelt kafka trigger parameter",
    ),
    pytest.param(
        "{kind: ServiceMonitor, name: cxrwatch}",
        """\
        - op: add
          path: /spec/endpoints/0/intervall
          value: 15s
        """,
        "intervall",
        id="ServiceMonitor: misspelt endpoint field",
    ),
]


@pytest.mark.parametrize(("target", "patch", "culprit"), INVALID_FIELDS)
def test_an_invalid_field_fails_validation(
    tmp_path: Path, target: str, patch: str, culprit: str
) -> None:
    manifests = overlay_with_patch(tmp_path, target, patch)

    found = [p for m in manifests for p in problems(m, KUBERNETES_VERSIONS[-1])]

    assert len(found) == 1, found
    assert culprit in found[0]


def test_the_unpatched_copy_of_prod_is_valid(tmp_path: Path) -> None:
    # The negative tests' harness alone introduces no problem.
    manifests = overlay_with_patch(
        tmp_path,
        "{kind: ConfigMap, name: cxrwatch-common}",
        """\
        - op: add
          path: /metadata/labels
          value: {checked: "yes"}
        """,
    )

    assert [p for m in manifests for p in problems(m, KUBERNETES_VERSIONS[-1])] == []


def test_a_required_custom_field_missing_fails_validation() -> None:
    topic = copy.deepcopy(next(m for m in rendered("prod") if m["kind"] == "KafkaUser"))
    del topic["spec"]["authorization"]["acls"][0]["resource"]["type"]

    assert any("'type' is a required property" in p for p in problems(topic, "1.37"))
