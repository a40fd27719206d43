"""The example deployment files load: the cxhub config the compose and Kubernetes examples mount
validates (with the environment they give it), and the manifests are the YAML they claim to be."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from hub.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ENV = {
    "CXHUB_SECRET_KEY": "k" * 32,
    "CXHUB_STORE_URL": "postgresql://cxhub:cxhub@postgres:5432/cxhub",
    "CXHUB_OPERATOR_TOKEN": "operator-token",
    "REVIEWS_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"example").decode(),
}


def test_the_cluster_config_uses_the_nats_transport() -> None:
    cfg = load_config(DEPLOY / "cxhub.yaml", env=ENV)
    assert cfg.raw.transport.kind == "nats"
    assert cfg.raw.transport.url == "nats://nats:4222" and cfg.raw.transport.replicas == 1
    three = load_config(DEPLOY / "cxhub.yaml", env={**ENV, "CXHUB_NATS_REPLICAS": "3"})
    assert three.raw.transport.replicas == 3


def test_the_manifests_run_migrate_then_receivers_and_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert services["migrate"]["command"][0] == "migrate"
    assert services["receiver"]["command"][-2:] == ["--role", "receiver"]
    assert services["worker"]["command"][-2:] == ["--role", "worker"]
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cxhub.yaml").read_text(encoding="utf-8")))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Job", "cxhub-migrate-v0-1-0") in kinds
    roles = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["args"]
        for d in docs
        if d["kind"] == "Deployment"
    }
    assert roles["cxhub-receiver"][-2:] == ["--role", "receiver"]
    assert roles["cxhub-worker"][-2:] == ["--role", "worker"]
    receiver = next(d for d in docs if d["metadata"]["name"] == "cxhub-receiver" and d["kind"] == "Deployment")
    assert receiver["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/readyz"
