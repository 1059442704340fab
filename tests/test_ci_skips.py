"""CI's skip check (.ci/check_skips.py): only a skip for a missing optional extra passes."""

from __future__ import annotations

import runpy

from conftest import REPO

check = runpy.run_path(str(REPO / ".ci" / "check_skips.py"))


def test_only_skips_for_a_missing_extra_pass():
    report = "\n".join(
        [
            "SKIPPED [1] tests/test_app.py:16: the web demo needs the `app` extra (gradio)",
            "SKIPPED [2] tests/test_x.py:9: reference fixtures not found at tests/fixtures/mraa_tiny",
            "SKIPPED [1] tests/test_y.py:3: needs the `gpu` extra",
            "1 passed, 4 skipped in 1.00s",
        ]
    )
    bad = check["bad_skips"](report)
    assert [line.split()[2] for line in bad] == ["tests/test_x.py:9:", "tests/test_y.py:3:"]
    assert check["bad_skips"]("3 passed in 1.00s") == []
    assert check["EXTRAS"] == {"convert", "export", "app", "test"}
