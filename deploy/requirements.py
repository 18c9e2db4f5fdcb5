"""Print the runtime dependencies named in pyproject.toml, one per line.

The Dockerfile installs them in a layer of their own, before the code, so a
change to the code does not reinstall them: ``python requirements.py
pyproject.toml > requirements.txt && pip install -r requirements.txt``.
"""

from __future__ import annotations

import sys
import tomllib


def main() -> None:
    """Read the pyproject.toml named on the command line and print its dependencies."""
    if len(sys.argv) != 2:
        sys.exit("usage: python requirements.py PATH/TO/pyproject.toml")
    with open(sys.argv[1], "rb") as file:
        project = tomllib.load(file)["project"]
    print("\n".join(project["dependencies"]))


if __name__ == "__main__":
    main()
