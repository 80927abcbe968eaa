"""OPC UA: the connection block (endpoint, security, trust list), node-addressed tags,
and the mapping from tag data types to OPC UA built-in types.

Security is explicit. The defaults are Basic256Sha256 with SignAndEncrypt, which
need the client's certificate and private key and a trust list for the server's
certificate; an unsecured connection happens only when the plant file says
``security_policy: "None"`` itself, and nothing ever falls back to it. The SHA-1
policies (Basic128Rsa15, Basic256) are deprecated by the OPC Foundation and
cannot be selected.

A password is never written in the plant file: ``password_env`` names the
environment variable that holds it, read by the driver when it connects
(:mod:`plantfile.protocols.passwords`: never one of plantcore's own settings). It
travels only over Basic256Sha256 SignAndEncrypt, unless the block says
``allow_unencrypted_password: true``.

Nothing here imports the OPC UA stack: loading a plant file stays cheap for
plants without OPC UA devices (the driver parses node ids with the stack itself).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plantfile.protocols.base import DeviceConfig
from plantfile.protocols.passwords import (
    PasswordVariable,
    UnencryptedPasswordConsent,
    check_password_transport,
)
from plantfile.tags import DataType, TagConfig

SecurityPolicy = Literal["Basic256Sha256", "None"]
SecurityMode = Literal["SignAndEncrypt", "Sign"]

_SHA1_POLICIES = frozenset({"Basic128Rsa15", "Basic256"})

# The OPC UA built-in type (Part 6, 5.1.2) each tag data type is written as.
VARIANT_TYPES: dict[DataType, str] = {
    "bool": "Boolean",
    "int8": "SByte",
    "uint8": "Byte",
    "int16": "Int16",
    "uint16": "UInt16",
    "int32": "Int32",
    "uint32": "UInt32",
    "float32": "Float",
    "float64": "Double",
}

# Part 6, 5.3.1.10: [ns=<namespace index>;]<i|s|g|b>=<identifier>
_NODE_ID = re.compile(r"^(?:ns=(?P<ns>\d+);)?(?P<kind>[isgb])=(?P<identifier>.+)$", re.DOTALL)
_GUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")


def check_node_id(text: str) -> str:
    """Return ``text`` if it is a node id in the standard string form, else raise ValueError.

    Only the forms every server understands are accepted: a namespace index (not
    a namespace URI) and a numeric, string, GUID or base64 ByteString identifier.
    """
    match = _NODE_ID.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a node id such as 'ns=2;s=Press.Speed' or 'i=2258'")
    namespace, kind, identifier = match["ns"], match["kind"], match["identifier"]
    if namespace is not None and int(namespace) > 0xFFFF:
        raise ValueError(f"{text!r}: namespace index {namespace} is above 65535")
    if kind == "i" and not (identifier.isascii() and identifier.isdigit()):
        raise ValueError(f"{text!r}: a numeric identifier must be a whole number")
    if kind == "i" and int(identifier) > 0xFFFFFFFF:
        raise ValueError(f"{text!r}: numeric identifier {identifier} is above 2^32-1")
    if kind == "g" and _GUID.match(identifier) is None:
        raise ValueError(
            f"{text!r}: a GUID identifier looks like 72962b91-fa75-4ae6-8d28-b404dc7daf63"
        )
    if kind == "b" and _BASE64.match(identifier) is None:
        raise ValueError(f"{text!r}: a ByteString identifier must be base64")
    return text


class OpcUaConnection(BaseModel):
    """How to reach one OPC UA server, and how to trust it.

    Paths are read when the driver connects (relative ones from the working
    directory), so a renewed certificate is picked up at the next reconnect.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoint: str = Field(description="opc.tcp://host:port/path")
    security_policy: SecurityPolicy = "Basic256Sha256"
    security_mode: SecurityMode = "SignAndEncrypt"
    certificate: Path | None = Field(None, description="the client's certificate, DER or PEM")
    private_key: Path | None = Field(None, description="the client's private key, unencrypted")
    trusted_server_certificates: Sequence[Path] = Field(
        (), description="certificate files, or directories of them, the server must present one of"
    )
    publishing_interval_ms: float = Field(1000.0, gt=0)
    timeout_seconds: float = Field(4.0, gt=0)
    username: str | None = Field(None, min_length=1)
    password_env: PasswordVariable | None = Field(
        None,
        description="environment variable holding the password; not one of plantcore's own"
        " (PLANTCORE_*)",
    )
    allow_unencrypted_password: UnencryptedPasswordConsent = False

    @property
    def secure(self) -> bool:
        return self.security_policy != "None"

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "opc.tcp" or not parts.hostname:
            raise ValueError(f"{value!r} is not an opc.tcp://host:port/path endpoint")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        if not port:
            raise ValueError(f"{value!r} needs a port (4840 is the registered OPC UA port)")
        if parts.username is not None or parts.password is not None:
            raise ValueError("credentials do not belong in the endpoint: use username/password_env")
        return value

    @field_validator("trusted_server_certificates", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: object) -> object:
        return [value] if isinstance(value, str | Path) else value

    @field_validator("security_policy", mode="before")
    @classmethod
    def _no_sha1(cls, value: object) -> object:
        if value in _SHA1_POLICIES:
            raise ValueError(f"{value} relies on SHA-1 and is deprecated: use Basic256Sha256")
        return value

    @model_validator(mode="after")
    def _consistent_security(self) -> Self:
        if self.secure:
            missing = [
                name for name in ("certificate", "private_key") if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(
                    f"security_policy {self.security_policy} needs {' and '.join(missing)}"
                    ' (an unsecured connection must say security_policy: "None")'
                )
            if not self.trusted_server_certificates:
                raise ValueError(
                    f"security_policy {self.security_policy} needs trusted_server_certificates:"
                    " a server is trusted only when it presents one of them"
                )
        elif "security_mode" in self.model_fields_set:
            raise ValueError(
                'security_policy "None" neither signs nor encrypts: drop security_mode'
            )
        if (self.username is None) != (self.password_env is None):
            raise ValueError("username and password_env go together")
        # Sign leaves the messages readable; whether the password is then encrypted on its
        # own depends on the server's user token policy, which the plant file cannot promise.
        check_password_transport(
            self.password_env,
            encrypted=self.secure and self.security_mode == "SignAndEncrypt",
            consent=self.allow_unencrypted_password,
            how_to_encrypt="use security_policy Basic256Sha256 with security_mode SignAndEncrypt",
        )
        return self


class OpcUaTag(TagConfig):
    """A tag at one variable node of the server, by its node id."""

    node_id: str = Field(description="e.g. ns=2;s=Press.Speed")
    subscribe: bool = Field(
        True, description="monitored in the device's subscription; false: read at every poll"
    )

    @field_validator("node_id")
    @classmethod
    def _parseable(cls, value: str) -> str:
        return check_node_id(value)


class OpcUaDevice(DeviceConfig):
    protocol: Literal["opcua"]
    opcua: OpcUaConnection
    tags: Sequence[OpcUaTag] = Field(min_length=1)
