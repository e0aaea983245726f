"""Schema validation of rendered manifests.

Built-in kinds are checked by ``kubernetes-validate`` (PyPI, a test extra),
which ships the Kubernetes OpenAPI schemas of each release as JSON Schema; its
strict variant refuses any field the API does not define. Custom resources
(Strimzi, KEDA, Prometheus Operator) are checked against the hand-written
schemas in ``schemas/`` (see ``schemas/README.md`` for where they come from),
which are strict in the same way.
"""

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate

SCHEMAS = Path(__file__).parent / "schemas"

# Oldest and newest Kubernetes releases the manifests are meant for.
KUBERNETES_VERSIONS = ("1.30", "1.37")


class SchemaMissing(AssertionError):
    """A rendered resource has a kind no schema here describes."""


def is_builtin(api_version: str) -> bool:
    """True for Kubernetes' own API groups (core, apps, policy, *.k8s.io)."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


@functools.cache
def custom_schema(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """The validator for a custom resource kind."""
    path = SCHEMAS / f"{api_version.replace('/', '_')}_{kind}.json"
    if not path.exists():
        raise SchemaMissing(
            f"no schema for {kind} ({api_version}): add {path.name} to {SCHEMAS}"
        )
    schema = json.loads(path.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def problems(manifest: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Every schema violation of one resource, as readable lines."""
    name = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
    api_version = manifest["apiVersion"]
    if is_builtin(api_version):
        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise SchemaMissing(f"{name}: {exc.message}") from exc
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            return [f"{name}: {path}: {exc.message}"]
        return []
    validator = custom_schema(api_version, manifest["kind"])
    return [
        f"{name}: {'.'.join(str(p) for p in error.path)}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]
