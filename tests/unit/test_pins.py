"""constraints.txt holds exactly what the tests run with, and the image installs from it.

Every distribution the portal requires (pyproject.toml's dependencies and its dev extra,
transitively, markers evaluated for this interpreter, as installed in the venv running the tests)
has a ``==`` pin, and the installed version is the pinned one. `make test` installs with
``-c constraints.txt`` and so does the Dockerfile: CI tests the versions the image ships, and a
dependency added to pyproject.toml without `make pins` fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.utils import NormalizedName

from scripts import pins

ROOT = Path(__file__).resolve().parents[2]
UPDATE = "run `make pins` (a fresh resolution), then `make test`, and commit constraints.txt"


@pytest.fixture(scope="module")
def installed() -> dict[NormalizedName, pins.Required]:
    try:
        return pins.required()
    except pins.MissingDistributionError as exc:
        pytest.fail(f"{exc}: `make test` installs it")


def unpinned(installed: dict[NormalizedName, pins.Required], constraints: Path) -> list[str]:
    pinned = pins.read_pins(constraints)
    return [" <- ".join(reversed(r.via)) for key, r in installed.items() if key not in pinned]


def off_pin(installed: dict[NormalizedName, pins.Required], constraints: Path) -> list[str]:
    pinned = pins.read_pins(constraints)
    return [
        f"{r.name} {r.version} is installed, {pinned[key]} pinned"
        for key, r in installed.items()
        if key in pinned and pinned[key] != r.version
    ]


def test_every_required_distribution_is_pinned(
    installed: dict[NormalizedName, pins.Required],
) -> None:
    missing = unpinned(installed, pins.CONSTRAINTS)
    assert not missing, f"constraints.txt has no pin for {'; '.join(missing)}: {UPDATE}"


def test_installed_versions_are_the_pinned_ones(
    installed: dict[NormalizedName, pins.Required],
) -> None:
    wrong = off_pin(installed, pins.CONSTRAINTS)
    assert not wrong, (
        f"the venv running the tests is not what constraints.txt pins: {'; '.join(wrong)}. "
        "Reinstall at the pins (`make test` does when constraints.txt changed); to move the "
        f"pins instead, {UPDATE}"
    )


def test_the_checks_name_a_missing_or_different_pin(
    installed: dict[NormalizedName, pins.Required], tmp_path: Path
) -> None:
    """A pin taken out, or changed, is reported by name with the chain that requires it."""
    required_by_another = next(r for r in installed.values() if len(r.via) > 1)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "".join(
            f"{r.name}=={r.version}\n" for r in installed.values() if r is not required_by_another
        )
    )
    assert unpinned(installed, constraints) == [" <- ".join(reversed(required_by_another.via))]
    assert off_pin(installed, constraints) == []

    constraints.write_text(
        "# a comment\n"
        + "".join(f"{r.name}=={r.version}.post99  # why\n" for r in installed.values())
    )
    assert len(off_pin(installed, constraints)) == len(installed)
    assert unpinned(installed, constraints) == []


def test_constraints_file_holds_only_exact_pins() -> None:
    pinned = pins.read_pins(pins.CONSTRAINTS)
    assert pinned, "constraints.txt pins nothing"
    lines = [line for line in pins.CONSTRAINTS.read_text().splitlines() if line.strip()]
    assert all(line.startswith("#") or re.fullmatch(r"[\w.-]+==\S+", line) for line in lines)
    assert "data-portal" not in pinned, "the project itself must not be pinned"


def _instructions(dockerfile: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def test_the_image_installs_at_the_pinned_versions() -> None:
    instructions = _instructions(ROOT / "Dockerfile")
    installs = [i for i, line in enumerate(instructions) if re.search(r"\bpip install\b", line)]
    assert installs, "the Dockerfile installs nothing with pip"
    for i in installs:
        assert re.search(r"\s(-c|--constraint)[ =]constraints\.txt(\s|$)", instructions[i]), (
            f"the Dockerfile's `{instructions[i]}` does not install with -c constraints.txt"
        )
        copies = [line.split()[1:-1] for line in instructions[:i] if line.startswith("COPY ")]
        assert any("constraints.txt" in sources for sources in copies), (
            "the Dockerfile does not COPY constraints.txt before installing with it"
        )


def test_make_installs_at_the_pinned_versions() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamps = re.findall(r"^(\$\(VENV\)/\.\w+-installed): (.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert {stamp for stamp, _, _ in stamps} == {
        "$(VENV)/.runtime-installed",
        "$(VENV)/.dev-installed",
    }
    for stamp, prerequisites, recipe in stamps:
        normal = prerequisites.split("|")[0].split()
        assert "constraints.txt" in normal, f"{stamp} must follow constraints.txt"
        assert "pip install --quiet -c constraints.txt -e " in recipe, stamp
