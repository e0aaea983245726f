"""The NetworkPolicies allow the architecture's flows and nothing else.

A small evaluator of the Kubernetes NetworkPolicy rules used here (pod and
namespace label selectors, IP blocks, ports): a connection is allowed when the
source's egress and the destination's ingress both allow it, where a pod that
no policy of a direction selects is open in that direction.
"""

import ipaddress
from dataclasses import dataclass, field

import pytest

from tests.deploy.manifests import of_kind, rendered

NAMESPACE = "cxrwatch"


@dataclass(frozen=True)
class Pod:
    """A pod as the policies see it."""

    name: str
    labels: dict[str, str]
    namespace: str = NAMESPACE
    ip: str = "10.0.0.1"
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def in_namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace, **self.namespace_labels}


def matches(selector: dict, labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "evaluator knows matchLabels only"
    return selector.get("matchLabels", {}).items() <= labels.items()


def peer_matches(peer: dict, pod: Pod, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        excepted = [ipaddress.ip_network(c) for c in peer["ipBlock"].get("except", [])]
        address = ipaddress.ip_address(pod.ip)
        return address in network and not any(address in e for e in excepted)
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], pod.in_namespace_labels()):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return matches(peer.get("podSelector", {}), pod.labels)


def port_matches(rule_ports: list[dict] | None, port: int) -> bool:
    if not rule_ports:
        return True
    for rule_port in rule_ports:
        first = rule_port.get("port")
        last = rule_port.get("endPort", first)
        if first is None or first <= port <= last:
            return True
    return False


def allowed_in(
    policies: list[dict], direction: str, pod: Pod, peer: Pod, port: int
) -> bool:
    kind = "Egress" if direction == "egress" else "Ingress"
    peers_key = "to" if direction == "egress" else "from"
    selecting = [
        p
        for p in policies
        if kind in p["spec"]["policyTypes"]
        and p["metadata"]["namespace"] == pod.namespace
        and matches(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(direction, []):
            peers = rule.get(peers_key)
            if (
                not peers
                or any(
                    peer_matches(x, peer, policy["metadata"]["namespace"])
                    for x in peers
                )
            ) and port_matches(rule.get("ports"), port):
                return True
    return False


def connects(policies: list[dict], source: Pod, destination: Pod, port: int) -> bool:
    return allowed_in(policies, "egress", source, destination, port) and allowed_in(
        policies, "ingress", destination, source, port
    )


def cxrwatch_pods(overlay: str) -> dict[str, Pod]:
    pods = {}
    for workload in rendered(overlay):
        if workload["kind"] in ("Deployment", "StatefulSet"):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            pods[labels["app.kubernetes.io/name"]] = Pod(
                labels["app.kubernetes.io/name"], labels
            )
    return pods


BROKER = Pod(
    "broker", {"strimzi.io/cluster": "cxrwatch-kafka", "strimzi.io/broker-role": "true"}
)
EXTERNAL_BROKER = Pod("external broker", {}, namespace="", ip="192.0.2.10")
DNS = Pod("dns", {"k8s-app": "kube-dns"}, namespace="kube-system")
PROMETHEUS = Pod(
    "prometheus", {"app.kubernetes.io/name": "prometheus"}, namespace="monitoring"
)
INGRESS = Pod("ingress controller", {"app": "ingress"}, namespace="ingress")
STRANGER = Pod("another app", {"app": "other"})

REDIS_CLIENTS = {"clinical", "joiner", "alerter", "api"}
KAFKA_CLIENTS = {"imaging", "clinical", "joiner", "scorer", "alerter"}


def flows(overlay: str) -> tuple[set, set]:
    """(allowed, denied) connections as (source, destination, port) names."""
    pods = cxrwatch_pods(overlay)
    broker = EXTERNAL_BROKER if overlay == "external-kafka" else BROKER
    everyone = [
        *pods.values(),
        BROKER,
        EXTERNAL_BROKER,
        DNS,
        PROMETHEUS,
        INGRESS,
        STRANGER,
    ]
    candidates = [
        (source, destination, port)
        for source in everyone
        for destination in everyone
        if source is not destination
        for port in (53, 443, 6379, 8001, 8002, 8080, 9000, 9093)
    ]
    policies = [
        {**p, "metadata": {**p["metadata"], "namespace": NAMESPACE}}
        for p in of_kind(rendered(overlay), "NetworkPolicy")
    ]
    allowed = {
        (s.name, d.name, port)
        for s, d, port in candidates
        if connects(policies, s, d, port)
        # Kafka's own side is Strimzi's policy or outside the cluster.
        or (
            d in (BROKER, EXTERNAL_BROKER)
            and d is broker
            and allowed_in(policies, "egress", s, d, port)
        )
    }
    return allowed, {(s.name, d.name, p) for s, d, p in candidates} - allowed


@pytest.mark.parametrize("overlay", ["dev", "prod", "external-kafka"])
def test_the_architectures_flows_are_allowed(overlay: str) -> None:
    allowed, _ = flows(overlay)
    pods = cxrwatch_pods(overlay)
    broker = EXTERNAL_BROKER if overlay == "external-kafka" else BROKER

    expected = {(p, broker.name, 9093) for p in KAFKA_CLIENTS}
    expected |= {(p, "redis", 6379) for p in REDIS_CLIENTS}
    expected |= {(p, "dns", 53) for p in pods}
    expected |= {("prometheus", p, 9000) for p in KAFKA_CLIENTS}
    expected |= {("ingress controller", "api", 8080), ("api", "dns", 53)}
    if "triton" in pods:
        expected |= {("scorer", "triton", 8001), ("prometheus", "triton", 8002)}

    assert expected <= allowed, expected - allowed


@pytest.mark.parametrize("overlay", ["dev", "prod", "external-kafka"])
def test_nothing_else_reaches_or_leaves_a_cxrwatch_pod(overlay: str) -> None:
    allowed, _ = flows(overlay)
    ours = set(cxrwatch_pods(overlay))

    unexpected = set()
    for source, destination, port in allowed:
        if source not in ours and destination not in ours:
            continue  # neither end is ours: not these policies' business
        if port == 53 and destination == "dns":
            continue
        if destination == "api" and port == 8080:
            continue  # the API is for everyone who can reach its Service
        if source == "api" and port == 443 and destination not in ours:
            continue  # OIDC discovery; see base/network-policies.yaml
        if (
            source in KAFKA_CLIENTS
            and destination in ("broker", "external broker")
            and port == 9093
        ):
            continue
        if overlay == "external-kafka" and source in KAFKA_CLIENTS and port == 9093:
            # Its egress names an address range the operator narrows to the
            # brokers (overlays/external-kafka/network-policies.yaml); until
            # then it admits any address on the Kafka ports.
            continue
        if source in REDIS_CLIENTS and destination == "redis" and port == 6379:
            continue
        if (source, destination, port) in {
            ("scorer", "triton", 8001),
            ("prometheus", "triton", 8002),
        } or (source == "prometheus" and destination in KAFKA_CLIENTS and port == 9000):
            continue
        unexpected.add((source, destination, port))

    assert unexpected == set()


def test_the_evaluator_sees_a_denied_flow() -> None:
    _, denied = flows("prod")

    for flow in [
        ("imaging", "redis", 6379),
        ("scorer", "redis", 6379),
        ("api", "triton", 8001),
        ("api", "broker", 9093),
        ("another app", "redis", 6379),
        ("triton", "broker", 9093),
        ("redis", "broker", 9093),
    ]:
        assert flow in denied, flow


def test_every_cxrwatch_pod_is_isolated_by_default() -> None:
    manifests = rendered("prod")
    (deny,) = [
        p
        for p in of_kind(manifests, "NetworkPolicy")
        if p["metadata"]["name"] == "cxrwatch-default-deny"
    ]

    for pod in cxrwatch_pods("prod").values():
        assert matches(deny["spec"]["podSelector"], pod.labels), pod.name
    assert not deny["spec"].get("ingress") and not deny["spec"].get("egress")
