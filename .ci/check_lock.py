"""Check that the virtual environment meets every requirement pyproject.toml names.

``make venv`` installs the pinned versions of requirements-dev.lock, then runs
this with the environment's Python. A requirement added to pyproject.toml after
the lock was written is missing from the environment, or met by a version the
new range excludes: this names it and asks for ``make lock``.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def unmet(requirement: Requirement) -> str | None:
    """Say why ``requirement`` is not met here, or return None when it is."""
    if requirement.marker is not None and not requirement.marker.evaluate({"extra": "dev"}):
        return None
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return f"{requirement.name} is not installed"
    if not requirement.specifier.contains(version, prereleases=True):
        return f"{requirement.name} {version} is installed, outside {requirement.specifier}"
    return None


def main() -> None:
    """Print each unmet requirement with where pyproject.toml names it; exit 1 if any."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    named = [("dependencies", text) for text in project["dependencies"]]
    named += [
        ("optional-dependencies.dev", text) for text in project["optional-dependencies"]["dev"]
    ]
    problems = [
        f"  {problem} (pyproject.toml [project] {where}: {text!r})"
        for where, text in named
        if (problem := unmet(Requirement(text)))
    ]
    if problems:
        sys.exit(
            "The lock files are older than pyproject.toml:\n"
            + "\n".join(problems)
            + "\nRun `make lock` to pin the new requirements, then `make venv`."
        )


if __name__ == "__main__":
    main()
