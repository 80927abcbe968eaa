"""``docs/architecture.md`` and the README's layout describe the code as it is.

- Every event of the command and alarm lifecycles is named where the page says
  who reacts to it, so a reader can follow any event to its module.
- Every module path the page names exists.
- The page's table of packages and the README's layout list exactly the
  project's top-level packages.
- The page names nothing outside the repository.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.test_layering import package_names

ROOT = Path(__file__).resolve().parents[3]
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _regenerate() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_regenerate", ROOT / "docs" / "regenerate.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _first_column_packages(section: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)/` \|", section, flags=re.MULTILINE))


@pytest.mark.parametrize("aggregate", ["ControlCommand", "Alarm", "AlarmFlood"])
def test_every_lifecycle_event_says_who_reacts_to_it(aggregate: str) -> None:
    regenerate = _regenerate()
    [cls] = [a for a in regenerate.aggregates() if a.__name__ == aggregate]
    reactions = _section(ARCHITECTURE, "## Who reacts to each event")
    rows = [line for line in reactions.splitlines() if line.startswith("| ")]

    missing = [
        event.__name__
        for event in regenerate.recorded_events(cls)
        if not any(f"`{event.__name__}`" in row.split(" | ")[0] for row in rows)
    ]

    assert missing == []


def test_every_module_the_page_names_exists() -> None:
    named = set(re.findall(r"`((?:[a-z_]+/)+[a-z_]+\.py)`", ARCHITECTURE))

    assert named, "the page names no module: the pattern is wrong"
    assert sorted(path for path in named if not (ROOT / path).is_file()) == []


def test_the_page_lists_every_package() -> None:
    packages = _section(ARCHITECTURE, "## The packages")

    assert _first_column_packages(packages) == package_names(ROOT)


def test_the_readme_layout_lists_every_package() -> None:
    layout = _section(README, "## Layout")

    assert _first_column_packages(layout) == package_names(ROOT)


def test_the_page_names_nothing_outside_the_repository() -> None:
    assert "DESIGN.md" not in ARCHITECTURE
    assert "../" not in ARCHITECTURE
