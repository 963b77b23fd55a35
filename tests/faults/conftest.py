"""The fault-injection suite's fixtures: `sites`, the module's shared ERP and MES databases (fault_support.Sites)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fault_support import Sites, dispose_engines


@pytest.fixture(scope="module")
def sites(db_factory) -> Iterator[Sites]:
    yield Sites(db_factory)
    dispose_engines()  # before db_factory drops the databases
