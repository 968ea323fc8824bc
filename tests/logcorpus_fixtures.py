"""Fixtures over ``logcorpus``: logs of real tool runs, made once per test session.

Load with ``pytest_plugins = ["logcorpus_fixtures"]`` in the root conftest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import logcorpus


@pytest.fixture(scope="session")
def real_log_dir(tmp_path_factory) -> Path:
    """A directory holding ``pip.log``, ``gcc.log`` and ``pytest.log``: real runs of those
    tools with colours forced, as a CI runner stores them (a few seconds, once a session)."""
    directory = tmp_path_factory.mktemp("logcorpus")
    logcorpus.generate(directory)
    return directory


@pytest.fixture(scope="session")
def real_logs(real_log_dir) -> dict[str, bytes]:
    """The logs of ``real_log_dir`` by name (``"pip"``, ``"gcc"``, ``"pytest"``)."""
    return logcorpus.generate(real_log_dir)
