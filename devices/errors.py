"""Errors of the device layer, each carrying what its caller needs.

::

    DeviceError                 device, reason
    ├── DeviceConnectionError   the connection is gone or could not be made: the
    │                           supervisor publishes bad quality and reconnects
    └── DeviceRequestError      the device answered a request with an error, or
                                not in time, while the connection stays up
    TagValueError               tag, value, reason: an engineering value that the
                                tag's data type cannot hold (a ValueError)
    PlantConfigError            path, line, field, reason: an invalid plant file

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


class TagValueError(ValueError):
    def __init__(self, tag: str, value: object, reason: str) -> None:
        super().__init__(f"tag {tag}: cannot encode {value!r}: {reason}")
        self.tag = tag
        self.value = value
        self.reason = reason


class PlantConfigError(ValueError):
    def __init__(self, path: str, field: str, reason: str, *, line: int | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        if field:
            where = f"{where}: {field}"
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.field = field
        self.reason = reason
        self.line = line
