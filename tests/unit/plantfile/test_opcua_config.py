"""The OPC UA connection block and tags: secure unless the plant file says otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args
from uuid import UUID

import pytest
import yaml
from asyncua import ua
from pydantic import ValidationError

from plantfile.protocols.opcua import VARIANT_TYPES, OpcUaConnection, OpcUaDevice, OpcUaTag
from plantfile.tags import DataType

ENDPOINT = "opc.tcp://press-2.plant.local:4840/plantcore/press"
SECURE = {
    "endpoint": ENDPOINT,
    "certificate": "pki/own/plantcore.der",
    "private_key": "pki/own/plantcore.key.pem",
    "trusted_server_certificates": ["pki/trusted/press-2.der"],
}


def connection(**changes: Any) -> OpcUaConnection:
    fields = {**SECURE, **changes}
    return OpcUaConnection.model_validate({k: v for k, v in fields.items() if v is not None})


def refused(reason: str, **changes: Any) -> None:
    with pytest.raises(ValidationError, match=reason):
        connection(**changes)


def test_the_defaults_are_basic256sha256_sign_and_encrypt() -> None:
    conn = connection()
    assert (conn.security_policy, conn.security_mode) == ("Basic256Sha256", "SignAndEncrypt")
    assert conn.secure
    assert (conn.publishing_interval_ms, conn.timeout_seconds) == (1000.0, 4.0)
    assert conn.certificate == Path("pki/own/plantcore.der")
    assert conn.trusted_server_certificates == [Path("pki/trusted/press-2.der")]
    assert (conn.username, conn.password_env) == (None, None)


def test_without_security_fields_there_is_no_fallback_to_none() -> None:
    with pytest.raises(ValidationError, match="needs certificate and private_key"):
        OpcUaConnection(endpoint=ENDPOINT)
    refused("needs private_key", private_key=None)
    refused("needs trusted_server_certificates", trusted_server_certificates=None)
    refused("needs trusted_server_certificates", trusted_server_certificates=[])


def test_none_must_be_written_out() -> None:
    (block,) = yaml.safe_load(f'[{{endpoint: "{ENDPOINT}", security_policy: None}}]')
    unsecured = OpcUaConnection.model_validate(block)
    assert unsecured.security_policy == "None"
    assert not unsecured.secure
    # YAML's null is not the policy None: it is refused, not taken as a default.
    (block,) = yaml.safe_load(f'[{{endpoint: "{ENDPOINT}", security_policy: null}}]')
    with pytest.raises(ValidationError, match="security_policy"):
        OpcUaConnection.model_validate(block)


def test_none_takes_no_mode_and_no_password() -> None:
    none = {"security_policy": "None", "certificate": None, "private_key": None}
    refused("drop security_mode", security_mode="SignAndEncrypt", **none)
    refused("must not travel", username="operator", password_env="PRESS_PASSWORD", **none)


@pytest.mark.parametrize("policy", ["Basic128Rsa15", "Basic256"])
def test_sha1_policies_cannot_be_selected(policy: str) -> None:
    refused("SHA-1", security_policy=policy)


@pytest.mark.parametrize("policy", ["Aes128Sha256RsaOaep", "basic256sha256", "none", ""])
def test_only_the_listed_policies_exist(policy: str) -> None:
    refused("security_policy", security_policy=policy)


def test_sign_only_is_a_choice() -> None:
    assert connection(security_mode="Sign").security_mode == "Sign"
    refused("security_mode", security_mode="None")


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("http://press-2:4840/plantcore", "opc.tcp://"),
        ("opc.tcp://:4840/plantcore", "opc.tcp://"),
        ("opc.tcp://press-2/plantcore", "needs a port"),
        ("opc.tcp://press-2:0/plantcore", "needs a port"),
        ("opc.tcp://press-2:70000/plantcore", "out of range"),
        ("opc.tcp://operator:secret@press-2:4840/plantcore", "credentials do not belong"),
    ],
)
def test_the_endpoint_is_an_opc_tcp_url_with_a_port(endpoint: str, reason: str) -> None:
    refused(reason, endpoint=endpoint)


def test_a_password_is_named_by_its_environment_variable() -> None:
    conn = connection(username="operator", password_env="PRESS_2_PASSWORD")
    assert (conn.username, conn.password_env) == ("operator", "PRESS_2_PASSWORD")
    refused("go together", username="operator")
    refused("go together", password_env="PRESS_2_PASSWORD")
    refused("pattern", username="operator", password_env="not a variable")
    refused("Extra inputs", username="operator", password="secret")


def test_the_trust_list_may_be_one_directory() -> None:
    conn = connection(trusted_server_certificates="pki/trusted")
    assert conn.trusted_server_certificates == [Path("pki/trusted")]


@pytest.mark.parametrize(
    ("node_id", "namespace", "identifier"),
    [
        ("ns=2;s=Press.Speed", 2, "Press.Speed"),
        ("i=2258", 0, 2258),
        ("ns=0;i=4294967295", 0, 4294967295),
        ("ns=65535;s=with;semicolons=and equals", 65535, "with;semicolons=and equals"),
        (
            "ns=3;g=72962b91-fa75-4ae6-8d28-b404dc7daf63",
            3,
            UUID("72962b91-fa75-4ae6-8d28-b404dc7daf63"),
        ),
        ("ns=4;b=AAECAw==", 4, b"\x00\x01\x02\x03"),
    ],
)
def test_node_ids_in_the_standard_form_are_accepted(
    node_id: str, namespace: int, identifier: object
) -> None:
    tag = OpcUaTag(name="speed", node_id=node_id, type="float64")
    assert tag.node_id == node_id
    assert tag.subscribe
    # What the config accepts, the driver's stack reads as the same node.
    parsed = ua.NodeId.from_string(node_id)
    assert type(parsed) is ua.NodeId
    assert (parsed.NamespaceIndex, parsed.Identifier) == (namespace, identifier)


@pytest.mark.parametrize(
    ("node_id", "reason"),
    [
        ("Press.Speed", "not a node id"),
        ("", "not a node id"),
        ("ns=2;x=1", "not a node id"),
        ("ns=2;", "not a node id"),
        ("nsu=urn:plantcore:press;s=Speed", "not a node id"),
        ("ns=70000;i=1", "above 65535"),
        ("ns=2;i=speed", "whole number"),
        ("i=4294967296", "above 2"),
        ("ns=2;g=not-a-guid", "GUID"),
        ("ns=2;b=not base64!", "base64"),
    ],
)
def test_other_node_ids_are_refused(node_id: str, reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        OpcUaTag(name="speed", node_id=node_id, type="float64")


def test_a_device_has_opcua_tags_and_the_shared_tag_rules() -> None:
    device = OpcUaDevice.model_validate(
        {
            "id": "press-2",
            "protocol": "opcua",
            "opcua": SECURE,
            "tags": [
                {"name": "speed", "node_id": "ns=2;s=Press.speed", "type": "float64"},
                {
                    "name": "count",
                    "node_id": "ns=2;s=Press.count",
                    "type": "int32",
                    "subscribe": False,
                },
            ],
        }
    )
    assert [(t.name, t.subscribe) for t in device.tags] == [("speed", True), ("count", False)]
    assert all(isinstance(t, OpcUaTag) for t in device.tags)
    with pytest.raises(ValidationError, match="needs both low and high"):
        OpcUaTag(name="speed", node_id="ns=2;s=Press.speed", type="float64", writable=True)
    with pytest.raises(ValidationError, match="Extra inputs"):
        OpcUaTag(name="speed", node_id="ns=2;s=Press.speed", type="float64", address=2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="at least 1"):
        OpcUaDevice.model_validate({"id": "p", "protocol": "opcua", "opcua": SECURE, "tags": []})


def test_every_data_type_has_an_opc_ua_builtin_type() -> None:
    assert set(VARIANT_TYPES) == set(get_args(DataType))
    for data_type, name in VARIANT_TYPES.items():
        assert isinstance(getattr(ua.VariantType, name), ua.VariantType), data_type
