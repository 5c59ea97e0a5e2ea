"""One API server per test module (SQLite, embedded stores), with the simulators behind it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.http.harness import ApiServer, serve_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with serve_api(tmp_path_factory.mktemp("api"), os.urandom(32).hex()) as server:
        yield server
