"""Errors of the device layer, each carrying what its caller needs.

::

    DeviceError                 device, reason
    ├── DeviceConnectionError   the connection is gone or could not be made: the
    │                           supervisor publishes bad quality and reconnects
    └── DeviceRequestError      the device answered a request with an error, or
                                not in time, while the connection stays up

Drivers translate their library's exceptions into these once, at the edge, so
the supervisor never sees a protocol stack's own error types.
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
    """One request failed (exception response, timeout) on a connection that is still up."""
