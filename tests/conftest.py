"""Fixtures that give tests real, empty databases (no mocks). Helpers live in tests/dbs.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

import dbs

NewDatabase = Callable[..., str]


@pytest.fixture(scope="module")
def db_factory(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewDatabase]:
    """``new(kind, suffix=kind) -> url``: a fresh database, dropped after the test module.

    Skips the requesting test (or every test using a module fixture built on it) when the
    server or driver for ``kind`` is missing, with the fix in the reason.
    """
    prefix = dbs.database_prefix(request.module.__name__.rpartition(".")[2])
    sqlite_dir = tmp_path_factory.mktemp(prefix)
    created: list[tuple[str, str]] = []

    def new(kind: str, suffix: str | None = None) -> str:
        dbs.skip_unless_available(kind)
        name = dbs.database_name(prefix, suffix or kind)
        if any(name == existing for _, existing in created):
            raise ValueError(f"database {name!r} already made in this module; pass another suffix")
        url = dbs.make_database(kind, name, sqlite_dir)
        created.append((kind, name))
        return url

    yield new
    for kind, name in reversed(created):
        dbs.drop_database(kind, name, sqlite_dir)
