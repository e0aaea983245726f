"""deploy/k8s/create-secrets.sh makes every Secret the manifests read."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.deploy.manifests import OVERLAYS, rendered
from tests.deploy.secrets_script import ScriptRun, run_create_secrets

# Made by someone else: Strimzi (its cluster CA) or the operator of an
# external Kafka (that cluster's CA).
NOT_OURS = {"cxrwatch-kafka-cluster-ca-cert", "cxrwatch-kafka-ca"}


def secret_references(manifest: object) -> set[tuple[str, str]]:
    """(Secret, key) pairs a resource reads, wherever they appear."""
    found: set[tuple[str, str]] = set()
    if isinstance(manifest, dict):
        if "secretKeyRef" in manifest:
            ref = manifest["secretKeyRef"]
            found.add((ref["name"], ref["key"]))
        if "secret" in manifest and "secretName" in manifest["secret"]:
            for item in manifest["secret"].get("items", [{"key": "*"}]):
                found.add((manifest["secret"]["secretName"], item["key"]))
        if {"parameter", "name", "key"} <= manifest.keys():  # KEDA
            found.add((manifest["name"], manifest["key"]))
        for value in manifest.values():
            found |= secret_references(value)
    elif isinstance(manifest, list):
        for value in manifest:
            found |= secret_references(value)
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_the_manifests_read_is_made(
    overlay: str, generated_secrets: ScriptRun
) -> None:
    wanted = {ref for m in rendered(overlay) for ref in secret_references(m)}
    made = {
        (name, key) for name, data in generated_secrets.secrets.items() for key in data
    }

    assert {ref for ref in wanted if ref[0] not in NOT_OURS} <= made


def test_values_are_random_and_never_on_a_command_line(
    generated_secrets: ScriptRun,
) -> None:
    passwords = [
        s["password"] for s in generated_secrets.secrets.values() if "password" in s
    ]

    assert len(passwords) == len(set(passwords)) == 7
    assert all(len(p) == 64 for p in passwords)
    for password in passwords:
        assert password not in generated_secrets.argv


def test_kafka_user_names_match_the_kafka_users(generated_secrets: ScriptRun) -> None:
    users = {
        m["metadata"]["name"] for m in rendered("prod") if m["kind"] == "KafkaUser"
    }

    for user in users:
        secret = generated_secrets.secrets[user.replace("cxrwatch-", "cxrwatch-kafka-")]
        assert secret["username"] == user


def test_redis_url_carries_the_redis_password(generated_secrets: ScriptRun) -> None:
    redis = generated_secrets.secrets["cxrwatch-redis"]

    assert redis["url"] == f"redis://:{redis['password']}@cxrwatch-redis:6379/0"


def test_the_printed_api_key_is_the_one_whose_hash_is_stored(
    generated_secrets: ScriptRun,
) -> None:
    key = generated_secrets.stderr.rsplit(": ", 1)[1].strip()
    stored = json.loads(generated_secrets.secrets["cxrwatch-api"]["api-keys"])

    assert stored == {
        hashlib.sha256(key.encode()).hexdigest(): {"name": "admin", "role": "admin"}
    }
    assert key not in generated_secrets.argv


def test_existing_secrets_are_kept(tmp_path: Path) -> None:
    run = run_create_secrets(tmp_path, existing=True)

    assert run.secrets == {}
    # Five services, KEDA, Redis and the API.
    assert run.stdout.count("kept") == 8
