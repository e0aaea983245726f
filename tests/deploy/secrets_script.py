"""Running deploy/k8s/create-secrets.sh against a stand-in kubectl.

The stand-in records its arguments and the manifests it receives on stdin,
and answers "not found" to every ``get`` (or "found" when told to), so the
script's output can be checked without a cluster.
"""

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.deploy.manifests import K8S

SCRIPT = K8S / "create-secrets.sh"

FAKE_KUBECTL = """#!/bin/sh
printf '%s\\n' "$*" >> "$FAKE_KUBECTL_LOG/argv"
case "$*" in
  *" get secret "*) [ -n "$FAKE_KUBECTL_EXISTS" ] && exit 0; exit 1 ;;
  *" create -f -"*)
    cat >> "$FAKE_KUBECTL_LOG/created.yaml"
    echo --- >> "$FAKE_KUBECTL_LOG/created.yaml" ;;
esac
"""


@dataclass
class ScriptRun:
    """What one run of the script did."""

    secrets: dict[str, dict[str, str]]
    argv: str
    stdout: str
    stderr: str


def run_create_secrets(workdir: Path, *, existing: bool = False) -> ScriptRun:
    """Run the script for namespace ``cxrwatch`` with the stand-in kubectl."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "kubectl"
    fake.write_text(FAKE_KUBECTL)
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_KUBECTL_LOG": str(workdir),
        "FAKE_KUBECTL_EXISTS": "1" if existing else "",
    }

    result = subprocess.run(
        ["bash", str(SCRIPT), "cxrwatch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )

    created = workdir / "created.yaml"
    documents = yaml.safe_load_all(created.read_text()) if created.exists() else []
    secrets = {d["metadata"]["name"]: d["stringData"] for d in documents if d}
    return ScriptRun(
        secrets, (workdir / "argv").read_text(), result.stdout, result.stderr
    )
