"""The inference tests (export, search, index) run torch on one thread."""

from __future__ import annotations

import pytest

from _support.threads import one_thread


@pytest.fixture(autouse=True)
def _inference_tests_on_one_thread():
    """Every test of this folder runs torch on one thread; other folders are untouched."""
    with one_thread():
        yield
