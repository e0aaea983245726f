"""Kafka resources against the services' code: topics, ACLs, sizes, scaling.

The services' topics come from their source (``service_code``); the tests
fail when a service starts using a topic no KafkaTopic creates, reads a topic
its KafkaUser may not read, or may scale past its input's partitions.
"""

import pytest
from cxrwatch.core import topics

from tests.deploy.manifests import (
    STREAM_SERVICES,
    environment,
    named,
    of_kind,
    rendered,
    service_container,
)
from tests.deploy.service_code import NotWrittenYet, input_topics, produced_topics

STRIMZI_OVERLAYS = ("dev", "prod")
SCALED_OVERLAYS = ("prod", "external-kafka")


def code_or_skip(read, service: str) -> set[str]:
    try:
        return read(service)
    except NotWrittenYet as exc:
        pytest.skip(str(exc))


def kafka_topics(overlay: str) -> dict[str, dict]:
    return {
        t["spec"].get("topicName", t["metadata"]["name"]): t["spec"]
        for t in of_kind(rendered(overlay), "KafkaTopic")
    }


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_a_topic_exists_for_every_topic_name_in_the_code(overlay: str) -> None:
    assert set(kafka_topics(overlay)) == set(topics.ALL)


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
@pytest.mark.parametrize("service", STREAM_SERVICES)
def test_every_topic_a_service_uses_exists(service: str, overlay: str) -> None:
    used = code_or_skip(input_topics, service) | produced_topics(service)

    assert used | {topics.DEADLETTER} <= set(kafka_topics(overlay))


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_large_record_topics_accept_what_the_services_send(overlay: str) -> None:
    manifests = rendered(overlay)
    imaging = environment(manifests, service_container(manifests, "imaging"))
    largest = int(imaging["CXRWATCH_KAFKA_MAX_MESSAGE_BYTES"])
    specs = kafka_topics(overlay)
    broker = named(manifests, "Kafka", "cxrwatch-kafka")["spec"]["kafka"]["config"]

    for topic in topics.LARGE_MESSAGE_TOPICS:
        allowed = int(specs[topic]["config"]["max.message.bytes"])
        assert allowed >= largest, topic
        assert int(broker["replica.fetch.max.bytes"]) >= allowed


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_topics_survive_what_their_cluster_is_sized_for(overlay: str) -> None:
    manifests = rendered(overlay)
    brokers = sum(
        p["spec"]["replicas"]
        for p in of_kind(manifests, "KafkaNodePool")
        if "broker" in p["spec"]["roles"]
    )
    for name, spec in kafka_topics(overlay).items():
        min_isr = int(spec["config"]["min.insync.replicas"])
        assert spec["replicas"] <= brokers, name
        assert min_isr <= spec["replicas"], name
        assert spec["config"]["cleanup.policy"] == "delete", name
        if overlay == "prod":
            # One broker may be down while producers with acks=all go on.
            assert min_isr < spec["replicas"], name


def test_dead_letters_outlive_every_other_topic() -> None:
    specs = kafka_topics("prod")
    retention = {
        name: int(spec["config"]["retention.ms"]) for name, spec in specs.items()
    }

    assert retention[topics.DEADLETTER] == max(retention.values())
    assert retention[topics.DEADLETTER] >= 30 * 24 * 3600 * 1000


# ---- ACLs -------------------------------------------------------------------


def acl_operations(overlay: str, user: str) -> dict[tuple[str, str], set[str]]:
    """(resource type, name) -> operations allowed to ``user``."""
    kafka_user = named(rendered(overlay), "KafkaUser", user)
    assert kafka_user["spec"]["authentication"]["type"] == "scram-sha-512"
    granted: dict[tuple[str, str], set[str]] = {}
    for acl in kafka_user["spec"]["authorization"]["acls"]:
        assert acl.get("type", "allow") == "allow"
        resource = acl["resource"]
        key = (resource["type"], resource["name"])
        assert resource.get("patternType") == "literal" or user == "cxrwatch-keda"
        granted.setdefault(key, set()).update(acl["operations"])
    return granted


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
@pytest.mark.parametrize("service", STREAM_SERVICES)
def test_a_service_reads_and_writes_only_its_own_topics(
    service: str, overlay: str
) -> None:
    reads = code_or_skip(input_topics, service)
    writes = produced_topics(service) | {topics.DEADLETTER}
    granted = acl_operations(overlay, f"cxrwatch-{service}")

    assert granted.pop(("group", f"cxrwatch-{service}")) == {"Read"}
    for topic in topics.ALL:
        expected = {"Describe"}
        expected |= {"Read"} if topic in reads else set()
        expected |= {"Write"} if topic in writes else set()
        assert granted.pop(("topic", topic)) == expected, topic
    assert granted == {}, f"more than its topics and group: {granted}"


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_keda_may_only_describe(overlay: str) -> None:
    granted = acl_operations(overlay, "cxrwatch-keda")

    assert set().union(*granted.values()) == {"Describe"}


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_users_take_their_passwords_from_the_services_secrets(overlay: str) -> None:
    manifests = rendered(overlay)
    for service in STREAM_SERVICES:
        user = named(manifests, "KafkaUser", f"cxrwatch-{service}")
        ref = user["spec"]["authentication"]["password"]["valueFrom"]["secretKeyRef"]
        variables = environment(manifests, service_container(manifests, service))

        password = variables["CXRWATCH_KAFKA_SASL_PASSWORD"]["secretKeyRef"]
        username = variables["CXRWATCH_KAFKA_SASL_USERNAME"]["secretKeyRef"]
        assert password == ref
        assert username == {"name": ref["name"], "key": "username"}


@pytest.mark.parametrize("overlay", STRIMZI_OVERLAYS)
def test_clients_connect_to_the_scram_tls_listener(overlay: str) -> None:
    manifests = rendered(overlay)
    (listener,) = named(manifests, "Kafka", "cxrwatch-kafka")["spec"]["kafka"][
        "listeners"
    ]
    for service in STREAM_SERVICES:
        variables = environment(manifests, service_container(manifests, service))

        assert variables["CXRWATCH_KAFKA_BOOTSTRAP"] == (
            f"cxrwatch-kafka-kafka-bootstrap:{listener['port']}"
        )
        assert variables["CXRWATCH_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert variables["CXRWATCH_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert listener["tls"] is True
    assert listener["authentication"]["type"] == "scram-sha-512"


# ---- autoscaling ------------------------------------------------------------


@pytest.mark.parametrize("overlay", SCALED_OVERLAYS)
@pytest.mark.parametrize("service", STREAM_SERVICES)
def test_scaling_follows_the_lag_of_the_services_inputs(
    service: str, overlay: str
) -> None:
    inputs = code_or_skip(input_topics, service)
    scaled = named(rendered(overlay), "ScaledObject", f"cxrwatch-{service}")
    triggers = scaled["spec"]["triggers"]

    assert {t["type"] for t in triggers} == {"kafka"}
    assert {t["metadata"]["topic"] for t in triggers} == inputs
    for trigger in triggers:
        assert trigger["metadata"]["consumerGroup"] == f"cxrwatch-{service}"
        assert (
            trigger["metadata"]["bootstrapServersFromEnv"] == "CXRWATCH_KAFKA_BOOTSTRAP"
        )
        assert trigger["authenticationRef"]["name"] == "cxrwatch-kafka"


@pytest.mark.parametrize("service", STREAM_SERVICES)
def test_replicas_are_capped_at_the_partition_count(service: str) -> None:
    scaled = named(rendered("prod"), "ScaledObject", f"cxrwatch-{service}")
    specs = kafka_topics("prod")
    partitions = min(
        specs[t["metadata"]["topic"]]["partitions"] for t in scaled["spec"]["triggers"]
    )

    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions
