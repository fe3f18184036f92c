"""Shared fixtures. The tests use the installed `mithridate` wheel (python/ci.sh
builds it with maturin and installs it into a scratch venv first)."""

from __future__ import annotations

import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

REPO = HERE.parent.parent
ROBUST_FIXTURES = REPO / "robust" / "tests" / "fixtures"

try:
    import mithridate  # noqa: F401
except ImportError as e:  # pragma: no cover - a setup error, not a test result
    raise SystemExit(
        "the mithridate wheel is not installed in this interpreter; run python/ci.sh "
        f"(maturin build + pip install) first: {e}"
    )


@pytest.fixture
def robust_fixtures() -> pathlib.Path:
    return ROBUST_FIXTURES
