"""Which devices a live view follows: named ones, an area's, or the whole plant's.

One rule for every subscription that follows several devices (``tagUpdates``,
``deviceStatus``): a device or an area the plant does not know is refused by
name before anything is subscribed, so a typo is an error, never a stream that
stays silent forever.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.graphql.error_codes import INVALID_ARGUMENT, UNKNOWN_AREA, UNKNOWN_DEVICE, api_error
from domain.catalog import TagCatalog


def selected_devices(
    catalog: TagCatalog, devices: Sequence[str] | None = None, area: str | None = None
) -> list[str]:
    """``devices`` (each once, in the order given), those of ``area``, or every device.

    Both given: the named devices that are in ``area`` must be all of them, so
    the answer is never narrower than what was asked without saying so.
    """
    known = catalog.devices()
    if area is not None and area not in {catalog.area_of(device) for device in known}:
        raise api_error(f"unknown area {area!r}", UNKNOWN_AREA, argument="area")
    if devices is None:
        return [d for d in known if area is None or catalog.area_of(d) == area]
    if not devices:
        raise api_error("devices names no device", INVALID_ARGUMENT, argument="devices")
    chosen = list(dict.fromkeys(devices))
    for device in chosen:
        if device not in known:
            raise api_error(f"unknown device {device!r}", UNKNOWN_DEVICE, argument="devices")
        if area is not None and catalog.area_of(device) != area:
            raise api_error(
                f"device {device!r} is not in area {area!r}", UNKNOWN_DEVICE, argument="devices"
            )
    return chosen
