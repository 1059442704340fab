"""Fail when pytest's `-rs` report lists a skip that is not for a missing optional extra.

Every file the suite reads lives in the repository (tests/fixtures), so the only accepted
reason to skip is an optional extra of pyproject.toml that is not installed, named in the
reason as "the `NAME` extra". Usage: python .ci/check_skips.py PYTEST_OUTPUT
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

EXTRAS = set(
    tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]
)


def bad_skips(report: str) -> list[str]:
    """The SKIPPED lines of a `pytest -rs` report whose reason names no optional extra."""
    skips = [line for line in report.splitlines() if line.startswith("SKIPPED")]
    return [line for line in skips if not any(f"the `{extra}` extra" in line for extra in EXTRAS)]


if __name__ == "__main__":
    bad = bad_skips(Path(sys.argv[1]).read_text())
    for line in bad:
        print(f"skip not for a missing optional extra: {line}", file=sys.stderr)
    sys.exit(1 if bad else 0)
