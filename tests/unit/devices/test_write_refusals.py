"""Which answers to a write are the device's refusal (nothing written) and which leave
its outcome unknown, for the answers the simulators cannot give, built with each
protocol library's own types and parsers.

The timeouts, the Modbus exception codes and the refusals the simulators do give are
shown against the simulators, in tests/integration/devices.
"""

from __future__ import annotations

import struct

import pytest
from asyncua import ua
from asyncua.ua.status_codes import StatusCodes
from pycomm3.packets.logix import WriteTagRequestPacket, WriteTagResponsePacket
from snap7.error import S7Error
from snap7.s7protocol import S7Protocol

from devices.drivers.enip import write_unconfirmed
from devices.drivers.opcua import write_refused as opcua_refused
from devices.drivers.s7 import write_refused as s7_refused

# -- OPC UA: the status of a Write, or of the service fault that answered it ----------------


@pytest.mark.parametrize(
    "code",
    [
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNotWritable,
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadOutOfRange,
        StatusCodes.BadTypeMismatch,
        StatusCodes.BadTooManyOperations,
        StatusCodes.BadOutOfRange | 0x0400,  # flag bits do not change what it says
    ],
)
def test_an_opcua_status_saying_the_server_did_not_write_is_a_refusal(code: int) -> None:
    assert opcua_refused(ua.StatusCode(code))


@pytest.mark.parametrize(
    "code",
    [
        StatusCodes.BadTimeout,  # a server in front of a device: the device did not answer
        StatusCodes.BadCommunicationError,
        StatusCodes.BadDeviceFailure,
        StatusCodes.BadInternalError,
        StatusCodes.BadUnexpectedError,
        StatusCodes.UncertainLastUsableValue,
    ],
)
def test_an_opcua_status_that_does_not_say_leaves_the_write_unknown(code: int) -> None:
    assert not opcua_refused(ua.StatusCode(code))


# -- S7: what snap7 makes of the CPU's answer to a write ----------------------------------

ACK_DATA = 3
WRITE_AREA = 0x05
SUCCESS = 0xFF


def s7_answer(
    error_class: int = 0,
    error_code: int = 0,
    parameters: bytes = bytes([WRITE_AREA, 1]),
    data: bytes = bytes([SUCCESS]),
) -> bytes:
    """An S7 answer to a write of one item, as a CPU sends it."""
    header = struct.pack(
        ">BBHHHHBB", 0x32, ACK_DATA, 0, 1, len(parameters), len(data), error_class, error_code
    )
    return header + parameters + data


def s7_failure(answer: bytes) -> S7Error:
    """snap7's failure of a write answered with ``answer``."""
    protocol = S7Protocol()
    with pytest.raises(S7Error) as failure:
        protocol.check_write_response(protocol.parse_response(answer))
    return failure.value


def test_the_s7_answer_of_a_write_that_went_through_is_read_as_such() -> None:
    protocol = S7Protocol()
    protocol.check_write_response(protocol.parse_response(s7_answer()))


@pytest.mark.parametrize(
    "answer",
    [
        s7_answer(error_class=0x85),  # the header's error: the CPU did not run the job
        s7_answer(error_class=0x87, error_code=0x01),  # access error
        s7_answer(data=bytes([0x0A])),  # the item: object does not exist
        s7_answer(data=bytes([0x05])),  # the item: address out of range
    ],
)
def test_an_s7_answer_with_an_error_or_an_item_return_code_is_a_refusal(answer: bytes) -> None:
    assert s7_refused(s7_failure(answer))


@pytest.mark.parametrize(
    "answer",
    [
        s7_answer()[:8],  # cut short
        s7_answer(parameters=bytes([0x04, 1])),  # the answer of a read
        s7_answer(data=b""),  # no acknowledgement of the item
        s7_answer() + b"\x00",  # trailing bytes
    ],
)
def test_an_s7_answer_snap7_cannot_read_leaves_the_write_unknown(answer: bytes) -> None:
    assert not s7_refused(s7_failure(answer))


# -- EtherNet/IP: pycomm3's reply to a Write Tag request -----------------------------------


def enip_reply(raw: bytes | None) -> WriteTagResponsePacket:
    tag_info = {"data_type_name": "DINT", "tag_type": "atomic"}
    request = WriteTagRequestPacket(1, "Speed", 1, tag_info, 0, value=b"\x01\x00\x00\x00")
    return WriteTagResponsePacket(request, raw)


def cip_reply(general_status: int) -> bytes:
    """A controller's reply to a Write Tag request with ``general_status`` (0: success)."""
    reply = bytearray(50)
    reply[0:2] = b"\x70\x00"  # SendUnitData
    reply[46] = 0xCD  # the Write Tag service's reply
    reply[48] = general_status
    return bytes(reply)


@pytest.mark.parametrize(
    ("raw", "unconfirmed"),
    [
        (cip_reply(0x00), False),  # written
        (cip_reply(0x05), False),  # refused: path destination unknown
        (cip_reply(0x0E), False),  # refused: attribute not settable
        (None, False),  # never sent: pycomm3 could not build the request
        (b"\x70\x00\x10", True),  # a reply pycomm3 cannot parse
        (cip_reply(0x00)[:47], True),  # cut short before the status
    ],
)
def test_only_an_enip_reply_that_cannot_be_parsed_leaves_the_write_unknown(
    raw: bytes | None, unconfirmed: bool
) -> None:
    assert write_unconfirmed(enip_reply(raw)) is unconfirmed
