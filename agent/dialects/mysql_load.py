"""Loading a batch table on MySQL/MariaDB: `LOAD DATA LOCAL INFILE` (PyMySQL, or pyodbc with MariaDB Connector/ODBC)
where the server allows it, else multi-row INSERTs with many rows per statement (a server with `local_infile=OFF`).

Both paths put the same values in the batch table as a row-by-row insert would:
- LOAD DATA reads a tab-separated file this module writes (mode 0600, deleted after the statement): values as the
  text PyMySQL would send for them (decimals in plain notation, datetimes with their microseconds, a zoned value at
  its wall-clock time as PyMySQL does), `\\N` for NULL, backslash escapes for backslash, tab, newline, CR and NUL,
  binary values as hex turned back into bytes by `UNHEX` on the server. With LOCAL the server turns every conversion
  error into a warning (it cannot stop the client's upload), so any warning fails the batch, which rolls back:
  a value is loaded exactly or not at all.
- The multi-row INSERT binds every value (the dialect's bind types, as before), in statements of at most
  `_PARAMS_PER_STATEMENT` parameters: one round trip for a few hundred rows instead of one per row (pyodbc's
  executemany) or PyMySQL's per-row parameter dictionaries, and far below pyodbc's 32,767 and the server's 65,535
  placeholders.
"""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import operator
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from itertools import repeat
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from agent.errors import BulkLoadChanged

log = logging.getLogger("mes_erp_agent")

# Fastest in a measurement with 15 columns (MariaDB Connector/ODBC 3.1): about 200 rows per statement.
_PARAMS_PER_STATEMENT = 3000
# Server errors that mean "LOAD DATA LOCAL is not allowed here": MariaDB's ER_NOT_ALLOWED_COMMAND and
# ER_LOAD_INFILE_CAPABILITY_DISABLED, MySQL 8's ER_CLIENT_LOCAL_FILES_DISABLED.
_REFUSED = frozenset((1148, 4166, 3948))
# Systems (their URL without password) whose server refused LOAD DATA LOCAL in this process: loaded with INSERTs.
_refused: set[str] = set()
_REFUSED_TEXT = re.compile(r"\((?:1148|4166|3948)\)")

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def infile_allowed(conn: Connection) -> bool:
    """A driver that can send a local file (PyMySQL, pyodbc with MariaDB Connector/ODBC), to a server that has not
    refused LOAD DATA LOCAL in this process."""
    if _system(conn) in _refused:
        return False
    if conn.dialect.driver == "pymysql":
        return hasattr(conn.connection.driver_connection, "_local_infile")
    return conn.dialect.driver == "pyodbc"


def _system(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


def load_infile(
    conn: Connection, statement_for: Callable[[str], sa.TextClause], binary: Sequence[bool], rows: Sequence[Sequence[Any]],
) -> bool:
    """LOAD DATA LOCAL INFILE of `rows` with `statement_for(path)`. False when it cannot be used here (the caller
    then inserts; a server's refusal is logged once per system), True when loaded. Raises on anything else."""
    try:
        text = infile_text(rows, binary).encode("utf-8")
    except Unloadable as exc:
        log.debug("batch loaded with INSERTs: %s", exc)
        return False
    handle, name = tempfile.mkstemp(prefix="mea-batch-", suffix=".tsv")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text)
        path = Path(name).as_posix()  # Windows takes forward slashes too; the statement names the file in a literal
        if "'" in path or "\\" in path:
            log.debug("temporary file %s cannot be named in a LOAD DATA statement: batch loaded with INSERTs", path)
            return False
        result = _execute_load(conn, statement_for(path))
    except sa.exc.DBAPIError as exc:
        if not _is_refusal(exc):
            raise
        _refused.add(_system(conn))
        log.warning("target %s refuses LOAD DATA LOCAL INFILE (%s): batch tables are loaded with multi-row INSERTs "
                    "instead, which is slower. For the faster load a DBA sets local_infile=ON on that server (the agent "
                    "asks for it on its own connections)", conn.engine.url.host, str(exc.orig).strip().splitlines()[0])
        return False
    finally:
        os.unlink(name)
    _check_loaded(conn, result, len(rows))
    return True


def _check_loaded(conn: Connection, result: sa.CursorResult[Any], expected: int) -> None:
    """Every row loaded, no warning (with LOCAL a value the column cannot hold is a warning, not an error)."""
    warnings = getattr(result.context.cursor, "warning_count", None)
    if warnings is None:  # pyodbc does not say
        warnings = conn.exec_driver_sql("SELECT @@warning_count").scalar_one()
    if warnings or result.rowcount != expected:
        shown = conn.exec_driver_sql("SHOW WARNINGS LIMIT 3").fetchall() if warnings else []
        found = "; ".join(f"{w[2]} (warning {w[1]})" for w in shown) or f"{result.rowcount} of {expected} rows loaded"
        raise BulkLoadChanged(
            f"loading the batch into the batch table on the target would have changed or dropped values: {found}. "
            "The batch was rolled back and nothing was staged; check that the staging table's columns hold the mapped "
            "values (`mes-erp-agent drift`, `sql ddl`)")


class Unloadable(Exception):
    """A value LOAD DATA cannot take as PyMySQL would send it (bytes in a text column, a non-finite float)."""


def _is_refusal(exc: sa.exc.DBAPIError) -> bool:
    """The server (or the driver) does not allow LOAD DATA LOCAL: PyMySQL's error code, or pyodbc's message, which
    ends with the native error code in parentheses."""
    orig = exc.orig
    if orig is not None and orig.args and orig.args[0] in _REFUSED:
        return True
    return _REFUSED_TEXT.search(str(orig)) is not None


def _execute_load(conn: Connection, statement: sa.TextClause) -> sa.CursorResult[Any]:
    driver_connection: Any = conn.connection.driver_connection
    if not hasattr(driver_connection, "_local_infile"):
        return conn.execute(statement)
    # PyMySQL sends whatever file the server names in its LOAD LOCAL request: the connection answers such requests
    # only while this statement runs (MySQLDialect.on_connect turns them off on every new connection).
    driver_connection._local_infile = True
    try:
        return conn.execute(statement)
    finally:
        driver_connection._local_infile = False


def infile_text(rows: Sequence[Sequence[Any]], binary: Sequence[bool]) -> str:
    """The rows as LOAD DATA reads them: tab-separated, one per line, `\\N` for NULL, binary columns as hex.
    Formatted column by column: a column of one plain type (ints, naive datetimes, text without characters to
    escape) goes through one C-level map instead of a Python call per value."""
    columns = [_column_text(list(values), hexed) for values, hexed in zip(zip(*rows, strict=True), binary, strict=True)]
    return "".join(["\t".join(fields) + "\n" for fields in zip(*columns, strict=True)])


def _column_text(values: list[Any], hexed: bool) -> Sequence[str]:
    kinds = set(map(type, values))
    nulls = type(None) in kinds
    kinds.discard(type(None))
    if hexed:
        return [_NULL if v is None else bytes(v).hex() for v in values]
    if len(kinds) != 1:
        return [_field(v) for v in values]
    (kind,) = kinds
    if nulls:
        present = [v for v in values if v is not None]
        formatted = iter(_column_text(present, False))
        return [_NULL if v is None else next(formatted) for v in values]
    if kind is int:
        return list(map(str, values))
    if kind is str:
        joined = "".join(values)
        return [v.translate(_ESCAPES) for v in values] if any(c in joined for c in _SPECIAL) else values
    if kind is dt.datetime and not any(map(_tzinfo, values)):
        return list(map(dt.datetime.isoformat, values, repeat(" ", len(values))))
    if kind is decimal.Decimal:
        return list(map(format, values, repeat("f", len(values))))
    return [_field(v) for v in values]


_NULL = "\\N"
_SPECIAL = ("\\", "\t", "\n", "\r", "\0")
_tzinfo = operator.attrgetter("tzinfo")


def _field(value: Any) -> str:
    format_ = _FORMATS.get(type(value))
    if format_ is None:
        format_ = _format_for(value)
    return format_(value)


def _text(value: str) -> str:
    return value.translate(_ESCAPES)


def _datetime(value: dt.datetime) -> str:
    # PyMySQL sends a zoned datetime's wall-clock time too (it ignores tzinfo).
    return (value.replace(tzinfo=None) if value.tzinfo is not None else value).isoformat(" ")


def _time(value: dt.time) -> str:
    return (value.replace(tzinfo=None) if value.tzinfo is not None else value).isoformat()


def _timedelta(value: dt.timedelta) -> str:
    # The text PyMySQL sends for a timedelta (a TIME value as PyMySQL reads it).
    hours = value.seconds // 3600 % 24 + value.days * 24
    text = f"{hours:02d}:{value.seconds // 60 % 60:02d}:{value.seconds % 60:02d}"
    return f"{text}.{value.microseconds:06d}" if value.microseconds else text


def _float(value: float) -> str:
    text = repr(value)
    if text in ("inf", "-inf", "nan"):
        raise Unloadable(f"a float {text}")
    return text


def _null(_value: None) -> str:
    return "\\N"


_FORMATS: dict[type, Callable[[Any], str]] = {
    type(None): _null, str: _text, int: str, bool: lambda v: "1" if v else "0",
    decimal.Decimal: lambda v: format(v, "f"), float: _float, dt.datetime: _datetime, dt.date: dt.date.isoformat,
    dt.time: _time, dt.timedelta: _timedelta,
}


def _format_for(value: Any) -> Callable[[Any], str]:
    """Subclasses (an enum's str, a pendulum datetime) by their base type; anything else as its str() text, which
    is what PyMySQL sends for a type it has no encoder for."""
    for base in (bool, int, str, decimal.Decimal, float, dt.datetime, dt.date, dt.time, dt.timedelta):
        if isinstance(value, base):
            return _FORMATS[base]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise Unloadable("a binary value in a column that is not binary")
    return _str_text


def _str_text(value: Any) -> str:
    return _text(str(value))


def insert_rows(
    conn: Connection, statement_for: Callable[[int], tuple[str, bool]], width: int, rows: Sequence[Sequence[Any]],
    processors: Sequence[Callable[[Any], Any] | None],
) -> None:
    """Multi-row INSERTs of `rows`, every value through its column's bind processor. `statement_for(n)`: the driver's
    SQL for n rows (binds p{row}_{column} in row order) and whether the driver takes positional parameters."""
    per_statement = rows_per_statement(width)
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        sql, positional = statement_for(len(chunk))
        values = [v if p is None else p(v) for row in chunk for p, v in zip(processors, row, strict=True)]
        if positional:
            conn.exec_driver_sql(sql, tuple(values))
        else:
            names = [f"p{r}_{c}" for r in range(len(chunk)) for c in range(width)]
            conn.exec_driver_sql(sql, dict(zip(names, values, strict=True)))


def rows_per_statement(width: int) -> int:
    return max(1, _PARAMS_PER_STATEMENT // max(width, 1))


def pymysql_conversions() -> dict[Any, Any]:
    """PyMySQL's conversions, with DATETIME and TIMESTAMP text parsed by `datetime.fromisoformat` (C) where it can:
    PyMySQL's own regular expression costs about a third of reading a page of work orders."""
    from pymysql import converters
    from pymysql.constants import FIELD_TYPE

    return {**converters.conversions, FIELD_TYPE.DATETIME: _datetime_of, FIELD_TYPE.TIMESTAMP: _datetime_of}


_fromisoformat = dt.datetime.fromisoformat


def _datetime_of(text: str) -> Any:
    """A DATETIME/TIMESTAMP as the server sends it (`YYYY-MM-DD HH:MM:SS[.f...]`): what PyMySQL's convert_datetime
    returns (a zero or invalid date stays text), faster. Anything fromisoformat does not take exactly as the server
    wrote it (Python 3.10 takes only 0, 3 or 6 fraction digits; a zero date) goes to PyMySQL's converter."""
    if len(text) >= 19 and text[10] == " ":
        try:
            return _fromisoformat(text)
        except ValueError:
            pass
    from pymysql.converters import convert_datetime

    return convert_datetime(text)
