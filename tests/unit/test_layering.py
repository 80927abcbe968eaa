"""The layering of plantcore's packages, read from the imports of every module.

``ALLOWED`` is the whole rule: for each top-level package, the packages of
plantcore it may import. Imports point inwards, from the composition root
(``plantcore``) through the API and the parts that react to events, down to
the pure ``domain`` and ``plantfile`` and the leaf ``support``; simulators are
peers of the drivers and share only the plant file's format with them.
``FORBIDDEN_LIBRARIES`` adds the rules about the outside world: the domain and
the plant file do no I/O, only one module of the device layer knows NATS, and
nothing but the drivers and the simulators knows a PLC's protocol stack.

Every import counts, including those inside functions and under
``TYPE_CHECKING``: each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PURE = frozenset({"support", "domain", "plantfile"})
_BELOW_API = _PURE | {"eventstore", "devices", "projections", "reactors", "audit"}

# Who may import whom. A package not listed here fails the test until it is placed.
ALLOWED: Mapping[str, frozenset[str]] = {
    "support": frozenset(),
    "domain": frozenset(),
    "plantfile": frozenset({"domain"}),
    "eventstore": _PURE,
    "devices": _PURE,
    "projections": _PURE | {"eventstore"},
    "reactors": _PURE | {"eventstore", "devices", "projections"},
    "audit": _PURE | {"eventstore", "projections"},
    "api": _BELOW_API,
    "simulators": frozenset({"support", "plantfile"}),
    # The composition root knows every part; benchmarks measure any part, imported by nothing.
    "plantcore": _BELOW_API | {"api", "simulators"},
    "bench": _BELOW_API | {"api", "simulators", "plantcore"},
}

PROTOCOL_STACKS = frozenset({"pymodbus", "asyncua", "aiomqtt", "paho", "snap7", "pycomm3", "cpppo"})
IO_LIBRARIES = frozenset(
    {"nats", "redis", "asyncpg", "psycopg", "psycopg_pool", "fastapi", "starlette", "uvicorn"}
)

# Libraries a package's modules must not import; a module listed in EXCEPT may.
FORBIDDEN_LIBRARIES: Mapping[str, frozenset[str]] = {
    "support": IO_LIBRARIES | PROTOCOL_STACKS,
    "domain": IO_LIBRARIES | PROTOCOL_STACKS | {"strawberry", "os"},
    "plantfile": IO_LIBRARIES | PROTOCOL_STACKS,
    "devices": frozenset({"nats"}),
    "eventstore": PROTOCOL_STACKS,
    "projections": PROTOCOL_STACKS,
    "reactors": PROTOCOL_STACKS,
    "audit": PROTOCOL_STACKS,
    "api": PROTOCOL_STACKS,
}
EXCEPT: Mapping[str, frozenset[str]] = {
    # The device layer's one adapter to NATS: telemetry, status, alarms out, writes in.
    "devices/nats_bridge.py": frozenset({"nats"}),
}


@dataclass(frozen=True, slots=True)
class Arrow:
    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported} ({self.rule})"


def package_names(root: Path) -> set[str]:
    """The top-level packages of the project (folders with an ``__init__.py``), tests aside."""
    return {
        path.parent.name
        for path in root.glob("*/__init__.py")
        if path.parent.name not in {"tests", "docs"}
    }


def imports_of(source: str) -> Iterator[tuple[int, str]]:
    """Every absolute module name a module imports, with its line."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


def wrong_arrows(
    root: Path,
    allowed: Mapping[str, frozenset[str]] = ALLOWED,
    forbidden_libraries: Mapping[str, frozenset[str]] = FORBIDDEN_LIBRARIES,
    exceptions: Mapping[str, frozenset[str]] = EXCEPT,
) -> list[Arrow]:
    packages = package_names(root)
    arrows: list[Arrow] = []
    for package in sorted(packages):
        for path in sorted((root / package).rglob("*.py")):
            module = path.relative_to(root).as_posix()
            allowed_here = allowed.get(package, frozenset())
            libraries = forbidden_libraries.get(package, frozenset()) - exceptions.get(
                module, frozenset()
            )
            for line, name in imports_of(path.read_text(encoding="utf-8")):
                top = name.split(".")[0]
                if top in packages and top != package and top not in allowed_here:
                    arrows.append(Arrow(module, line, name, f"{package} may not import {top}"))
                elif top in libraries:
                    arrows.append(Arrow(module, line, name, f"{package} stays clear of {top}"))
    return arrows


def test_every_package_has_its_place_in_the_table() -> None:
    assert package_names(ROOT) == set(ALLOWED)


def test_imports_follow_the_layering() -> None:
    arrows = wrong_arrows(ROOT)
    assert arrows == [], "\n".join(map(str, arrows))


# -- the checker itself, on a small tree of its own --------------------------------------------


def _tree(root: Path, modules: Mapping[str, str]) -> Path:
    for name, source in modules.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return root


@pytest.fixture
def plant_tree(tmp_path: Path) -> Path:
    """Two layers as the real table has them: the domain below, the devices above it."""
    return _tree(
        tmp_path,
        {
            "domain/command.py": "from dataclasses import dataclass\n",
            "devices/supervisor.py": "from domain.command import dataclass\n",
            "devices/nats_bridge.py": "import nats\n",
        },
    )


def test_the_checker_accepts_an_arrow_the_table_allows(plant_tree: Path) -> None:
    assert wrong_arrows(plant_tree) == []


def test_the_checker_refuses_an_arrow_against_the_table(plant_tree: Path) -> None:
    (plant_tree / "domain" / "command.py").write_text(
        "from dataclasses import dataclass\n\n\ndef later() -> None:\n"
        "    from devices.supervisor import dataclass  # upwards, and hidden in a function\n"
    )

    assert [str(arrow) for arrow in wrong_arrows(plant_tree)] == [
        "domain/command.py:5 imports devices.supervisor (domain may not import devices)"
    ]


def test_the_checker_refuses_a_library_outside_its_one_module(plant_tree: Path) -> None:
    (plant_tree / "devices" / "driver.py").write_text("from nats.aio.client import Client\n")
    (plant_tree / "domain" / "policy.py").write_text("import os\nimport redis.asyncio\n")

    assert [str(arrow) for arrow in wrong_arrows(plant_tree)] == [
        "devices/driver.py:1 imports nats.aio.client (devices stays clear of nats)",
        "domain/policy.py:1 imports os (domain stays clear of os)",
        "domain/policy.py:2 imports redis.asyncio (domain stays clear of redis)",
    ]
