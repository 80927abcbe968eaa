"""Errors of the device layer, each carrying what its caller needs.

::

    DeviceError                 device, reason
    ├── DeviceConnectionError   the connection is gone or could not be made: the
    │                           supervisor publishes bad quality and reconnects
    ├── DeviceRequestError      one request failed while the connection stays up: the
    │                           device refused it, or did not answer a read in time;
    │                           from a write, it means the device did not write
    └── WriteOutcomeUnknown     a write went out and no answer says what the device did
                                with it, while the connection stays up

Drivers translate their library's exceptions into these once, at the edge, so
the supervisor never sees a protocol stack's own error types.

A write's failure is a :class:`DeviceRequestError` only when nothing was written
for certain: the device answered with a refusal (an exception code, a bad status
that means it did not write), or the driver never sent it. No answer in time, an
answer that cannot be read, or one that does not say (a gateway's "no response
from the target", a device failure while writing) is :class:`WriteOutcomeUnknown`,
and a connection lost mid-write is :class:`DeviceConnectionError`: the device may
have applied the value, so the supervisor answers ``outcome_unknown`` and the
dispatcher settles the command by reading the tag back (ADR 0005, ADR 0014).
What a driver cannot classify is an unknown outcome, never a refusal.
"""

from __future__ import annotations


class DeviceError(Exception):
    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"device {device}: {reason}")
        self.device = device
        self.reason = reason


class DeviceConnectionError(DeviceError):
    """The connection is lost or refused; nothing more can be read until a reconnect."""


class DeviceRequestError(DeviceError):
    """One request failed on a connection that is still up: refused (exception response,
    bad status), or a read not answered in time. Raised by a write: nothing was written."""


class WriteOutcomeUnknown(DeviceError):
    """A write may have reached the device, but no answer says whether it applied it (none in
    time, one that cannot be read or that does not say), on a connection that is still up."""
