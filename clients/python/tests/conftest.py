"""The plugin's tests run inner pytest sessions with `pytester` against the real binary
(`$CALLVCR_BIN`), each in a fresh directory of its own, so certs/ and cassettes/ never leak
between tests."""

import pytest

from support import INNER_CONFTEST

pytest_plugins = ["pytester"]


@pytest.fixture
def inner(pytester):
    """The pytester directory with the inner conftest in place."""
    pytester.makeconftest(INNER_CONFTEST)
    return pytester


