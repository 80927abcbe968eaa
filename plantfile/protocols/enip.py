"""EtherNet/IP to Allen-Bradley Logix controllers: the connection block and symbolic tags.

A Logix controller addresses its values by tag name (``Press.Speed``,
``Speeds[3]``, ``Program:Main.Count``) rather than by register. Each plant-file
tag names the controller tag it reads and declares its data type, which maps to
one Logix atomic type (:data:`LOGIX_TYPES`). The driver sends these declared
types with every write and checks them against every read reply, instead of
uploading the controller's tag database on connect.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from plantfile.protocols.base import DeviceConfig
from plantfile.tags import DataType, TagConfig

DEFAULT_PORT = 44818
MAX_SLOT = 16  # a 17-slot ControlLogix chassis numbers its slots 0 to 16

# Every plant data type has a Logix atomic type of the same width and signedness.
LOGIX_TYPES: dict[DataType, str] = {
    "bool": "BOOL",
    "int8": "SINT",
    "int16": "INT",
    "int32": "DINT",
    "uint8": "USINT",
    "uint16": "UINT",
    "uint32": "UDINT",
    "float32": "REAL",
    "float64": "LREAL",
}

# Logix names: a letter or underscore first, then letters, digits and underscores, at
# most 40 characters. Arrays take up to three comma-separated indices; a program-scoped
# tag starts with ``Program:<name>.``. A bit of an integer (``Word.3``) is not a tag of
# its own here: declare the integer instead.
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,39}"
_PART = rf"{_IDENTIFIER}(?:\[\d+(?:,\d+){{0,2}}\])?"
LOGIX_TAG_PATTERN = rf"^(?:Program:{_IDENTIFIER}\.)?{_PART}(?:\.{_PART})*$"
_INDICES = re.compile(r"\[[^\]]*\]")


class EnipConnection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # pycomm3's path syntax separates host, port and route with ':' and '/': no IPv6.
    host: str = Field(min_length=1, pattern=r"^[^:/\\,\s]+$", description="hostname or IPv4")
    port: int = Field(DEFAULT_PORT, ge=1, le=65534, description="pycomm3 refuses 65535")
    slot: int = Field(0, ge=0, le=MAX_SLOT, description="processor slot in the chassis")
    timeout_seconds: float = Field(2.0, gt=0)

    @property
    def path(self) -> str:
        """pycomm3's CIP path: over the backplane to the processor's slot."""
        return f"{self.host}:{self.port}/{self.slot}"


class EnipTag(TagConfig):
    """A tag at a symbolic address of the controller."""

    tag: str = Field(pattern=LOGIX_TAG_PATTERN, description="the controller's tag name")

    @property
    def logix_type(self) -> str:
        return LOGIX_TYPES[self.type]

    @property
    def declared_path(self) -> str:
        """The controller declaration this tag reads (see :func:`declared_path`)."""
        return declared_path(self.tag)


class EnipDevice(DeviceConfig):
    protocol: Literal["enip"]
    enip: EnipConnection
    tags: Sequence[EnipTag] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent_declarations(self) -> Self:
        check_declarations(self.tags)
        return self


def declared_path(tag: str) -> str:
    """``Press.Rolls[2].Speed`` → ``press.rolls.speed``: the controller declaration a tag reads.

    Logix names are case-insensitive and every element of an array shares its type.
    """
    return _INDICES.sub("", tag).casefold()


def check_declarations(tags: Iterable[EnipTag]) -> dict[str, str]:
    """The Logix type of each declared path; raises ValueError when the tags disagree.

    A controller tag has one type: two plant tags on elements of one array, or on the
    same controller tag, must declare the same type; and a tag cannot be an atomic
    value and a structure with members at once (``Press`` and ``Press.Speed``).
    """
    types: dict[str, str] = {}
    for tag in tags:
        path, logix_type = tag.declared_path, tag.logix_type
        if types.setdefault(path, logix_type) != logix_type:
            raise ValueError(f"{tag.tag} is declared both {types[path]} and {logix_type}")
    for path in types:
        parts = path.split(".")
        first = 2 if parts[0].startswith("program:") else 1  # Program:<name> is a scope, not a tag
        for end in range(first, len(parts)):
            parent = ".".join(parts[:end])
            if parent in types:
                raise ValueError(f"{parent} is declared {types[parent]} but {path} is its member")
    return types
