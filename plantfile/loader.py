"""Reads a plant file: YAML in, validated :class:`~plantfile.plant.PlantConfig` out.

Every problem is a :class:`~plantfile.loader.PlantConfigError` naming the file,
the line and the field (``plant.yaml:14: devices[press-1].tags[speed].high:
…``), so a plant engineer can fix the file without reading a traceback.

:func:`read_plant_file` is lenient where a running plant needs it to be: a bad
device block is reported and left out, and the other devices run. A problem in
the plant-wide keys, or a file that is not YAML, fails the whole file.
:func:`load_plant_file` is the strict form, for tools that need all of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from plantfile.plant import AnyDevice, PlantConfig, reconnect_conflict

_DEVICE: TypeAdapter[AnyDevice] = TypeAdapter(AnyDevice)


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


@dataclass(frozen=True, slots=True)
class PlantFile:
    """The plant with every valid device, and why the others were left out."""

    plant: PlantConfig
    problems: tuple[PlantConfigError, ...] = ()
    # The ids of the device blocks left out, where the block names one.
    rejected_ids: frozenset[str] = frozenset()


def load_plant_file(path: str | Path) -> PlantConfig:
    """The whole file, valid, or the first :class:`PlantConfigError`."""
    loaded = read_plant_file(path)
    if loaded.problems:
        raise loaded.problems[0]
    return loaded.plant


def read_plant_file(path: str | Path) -> PlantFile:
    """The plant-wide keys and every valid device; a bad device is a problem, not a failure."""
    where = str(path)
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise PlantConfigError(where, "", f"cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise PlantConfigError(where, "", f"not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise PlantConfigError(where, "", "must be a mapping of plant settings")
    devices = raw.get("devices") or []
    if not isinstance(devices, list):
        raise _problem(where, raw, ("devices",), "must be a list of devices")
    try:
        settings = PlantConfig.model_validate({**raw, "devices": []})
    except ValidationError as exc:
        raise _first_problem(where, raw, exc, ()) from exc

    valid: list[dict[str, Any]] = []
    problems: list[PlantConfigError] = []
    rejected: set[str] = set()
    seen: set[str] = set()
    for index, item in enumerate(devices):
        try:
            device = _DEVICE.validate_python(item)
        except ValidationError as exc:
            problems.append(_first_problem(where, raw, exc, ("devices", index)))
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                rejected.add(item["id"])
            continue
        if device.id in seen:
            problems.append(_problem(where, raw, ("devices", index, "id"), "duplicate device id"))
            continue
        conflict = reconnect_conflict(settings, device)
        if conflict is not None:
            problems.append(_problem(where, raw, ("devices", index, conflict.key), conflict.reason))
            rejected.add(device.id)
            continue
        seen.add(device.id)
        valid.append(item)
    plant = PlantConfig.model_validate({**raw, "devices": valid})
    return PlantFile(plant, tuple(problems), frozenset(rejected))


def _first_problem(
    where: str, raw: Any, exc: ValidationError, prefix: tuple[int | str, ...]
) -> PlantConfigError:
    first = exc.errors()[0]
    more = exc.error_count() - 1
    reason = first["msg"] + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
    loc = (*prefix, *first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "protocol")  # pydantic places a bad or missing protocol on the device
    return _problem(where, raw, loc, reason)


def _problem(where: str, raw: Any, loc: Sequence[int | str], reason: str) -> PlantConfigError:
    field, line = locate(raw, loc)
    return PlantConfigError(where, field, reason, line=line)


def locate(raw: Any, loc: Iterable[int | str]) -> tuple[str, int | None]:
    """``devices[press-1].tags[speed].high`` and its line: list items by id or name."""
    parts: list[str] = []
    node = raw
    line = getattr(raw, "line", None)
    after_index = False
    for key in loc:
        # Inside a list item, pydantic names the union member (the protocol) first.
        if after_index and isinstance(node, dict) and key == node.get("protocol"):
            after_index = False
            continue
        after_index = isinstance(key, int)
        child = _child(node, key)
        if isinstance(key, int):
            label = child.get("id") or child.get("name") if isinstance(child, dict) else None
            parts[-1:] = [f"{parts[-1] if parts else ''}[{label if label else key}]"]
            line = getattr(child, "line", line)
        else:
            parts.append(key)
            line = getattr(node, "key_lines", {}).get(key, line)
        node = child
    return ".".join(parts), line


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    if isinstance(node, dict):
        return node.get(key)
    return None


class _LocatedDict(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys are (1-based lines)."""

    line: int
    key_lines: dict[Any, int]


class _LineLoader(yaml.SafeLoader):
    """The safe loader, keeping line numbers on mappings for error messages."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LocatedDict:
    mapping = _LocatedDict(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {key.value: key.start_mark.line + 1 for key, _ in node.value}
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
