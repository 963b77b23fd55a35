"""Custom source queries (`query: sql/flows/<name>.sql`): checked before anything runs, read as a derived table.

A flow may name a SELECT the plant writes (joins, filters) instead of `table:`. The agent
1. parses it with sqlglot for the source system's dialect and refuses, with file:line, anything but one
   read-only SELECT: no INSERT/UPDATE/DELETE/MERGE/DDL/EXEC, no SELECT INTO, no locking clauses or hints,
   no second statement, no comment that could hide one, no functions with side effects;
2. reads it as a derived table and adds the keyset itself (`sql/<dialect>/read_batch.sql`):
       SELECT <columns> FROM (<the query>) AS "src" WHERE (<watermark>) > (:wm_0, ...) ORDER BY ... LIMIT ...
   so the query has no bind parameters, ORDER BY or LIMIT of its own. Databases merge such a derived table
   into the outer query: with an index on the watermark columns each batch stays one index range scan;
3. learns each output column's type from the base-table column it selects (through aliases, subqueries
   and CTEs); an expression (CASE, COALESCE, ...) has no known type: a mapped expression needs `type:`, and
   a watermark column must be a plain column (an index can only serve a column);
4. knows the tables and columns it reads: column-level grants (`sql grants`) and the drift gate
   (`query_tables`). In a query over several tables every column is qualified with its table's alias.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.scope import Scope, build_scope, traverse_scope
from sqlglot.tokens import Token, TokenType

from agent import dialects
from agent.dialects import Dialect
from agent.errors import AgentError

ALIAS = "src"  # the derived table's name in the read statement
TableName = tuple[str | None, str]

# Statements (or parts of one) that change something: never in a source query.
_WRITES = tuple(
    getattr(exp, name) for name in (
        "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "TruncateTable", "Command", "Execute",
        "Grant", "Revoke", "Transaction", "Commit", "Rollback", "Set", "Use", "Copy", "LoadData", "Pragma",
        "Analyze", "Kill", "Declare", "Cache", "Refresh",
    ) if hasattr(exp, name)
)
# Table hints (SQL Server) an index choice may use; every other hint locks, or reads uncommitted rows.
_HARMLESS_HINTS = {"INDEX", "FORCESEEK", "FORCESCAN", "NOEXPAND"}
_DIRTY_HINTS = {"NOLOCK", "READUNCOMMITTED", "READPAST"}
# Functions that change state, wait, lock or reach outside the database.
_SIDE_EFFECTS = {
    "nextval", "setval", "lastval", "set_config", "pg_sleep", "sleep", "benchmark", "get_lock", "release_lock",
    "pg_advisory_lock", "pg_advisory_xact_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared",
    "dblink", "dblink_exec", "lo_import", "lo_export", "lo_unlink", "pg_read_file", "pg_read_binary_file",
    "pg_ls_dir", "load_file", "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "txid_current",
    "openrowset", "opendatasource", "openquery",
}
# A comment that reads like a statement (it would run if a database parsed the comment differently).
_HIDDEN_STATEMENT = re.compile(
    r"\b(insert\s+into|update\s+\S+\s+set|delete\s+from|merge\s+into|truncate\s+table|"
    r"(create|drop|alter)(\s+or\s+replace)?\s+(table|view|index|procedure|function|trigger|schema|database|user|role|login)|"
    r"exec(ute)?\s+(sp_|xp_|\()|grant\s+\w+(\s*,\s*\w+)*\s+on|call\s+\w+\s*\(|into\s+(outfile|dumpfile))\b",
    re.IGNORECASE,
)


class QueryRefused(AgentError):
    """A custom source query is not a single read-only SELECT (or cannot be read as one)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class OutputColumn:
    name: str  # as the database names it in the result
    line: int
    origin: tuple[str | None, str, str] | None  # (schema, table, column) of a plain column; None: an expression


@dataclass(frozen=True)
class SourceQuery:
    path: Path
    dialect: str
    sql: str  # the statement as written, without a trailing `;`
    outputs: tuple[OutputColumn, ...]
    tables: tuple[TableName, ...]  # every table read, in order of first appearance
    columns_read: tuple[tuple[TableName, tuple[str, ...]], ...]  # per table, every column the query mentions
    uses_with: bool  # the query starts with WITH (a CTE)

    def output(self, name: str, dialect: Dialect) -> OutputColumn | None:
        return next((o for o in self.outputs if dialect.same_column(o.name, name)), None)

    def where(self, line: int | None = None) -> str:
        return f"{self.path}:{line or 1}"


def load(path: Path, dialect: Dialect) -> SourceQuery:
    """The checked query in `path`; raises QueryRefused listing every problem with file:line."""
    stat = path.stat()
    return _load(path.resolve(), stat.st_mtime_ns, stat.st_size, dialect.name)


def check(path: Path, dialect: Dialect) -> list[str]:
    """Problems with the query file (empty when it is a single read-only SELECT the agent can read)."""
    try:
        load(path, dialect)
    except QueryRefused as refused:
        return refused.problems
    except OSError as exc:
        return [f"{path}: cannot read the query file ({exc.strerror})"]
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        return [f"{path}:{line}: not UTF-8 text; save the query file as UTF-8"]
    return []


def query_tables(query: Path | None, table: TableName, dialect: Dialect | str) -> list[TableName]:
    """The (schema, table) pairs a flow reads: its `table:` when it has no `query:` file, else every table the
    query names."""
    if query is None:
        return [table]
    return list(load(query, dialects.for_name(dialect) if isinstance(dialect, str) else dialect).tables)


def columns_read(
    query: Path | None, table: TableName, dialect: Dialect, needed: list[str]
) -> list[tuple[TableName, list[str]]]:
    """Per source table, the columns a flow reads (for column-level grants): `needed` of its `table:` when it has
    no `query:` file, else every column the query mentions."""
    if query is None:
        return [(table, list(needed))]
    return [(name, list(columns)) for name, columns in load(query, dialect).columns_read]


def escape_binds(sql: str) -> str:
    """`:word` in a plant's literal or comment is text, not a bind parameter (sqlalchemy.text unescapes `\\:`)."""
    return re.sub(r"(?<![:\w\\]):(?=\w)", r"\\:", sql)


@lru_cache(maxsize=64)
def _load(path: Path, _mtime: int, _size: int, dialect_name: str) -> SourceQuery:
    dialect = dialects.for_name(dialect_name)
    text = path.read_text(encoding="utf-8")
    checker = _Checker(path, text, dialect)
    return checker.run()


class _Checker:
    def __init__(self, path: Path, text: str, dialect: Dialect):
        self.path, self.text, self.dialect = path, text, dialect
        self.read = dialect.sqlglot_name
        self.problems: list[str] = []
        self.tokens: list[Token] = []

    def refuse(self, line: int, what: str) -> None:
        self.problems.append(f"{self.path}:{line}: {what}")

    def run(self) -> SourceQuery:
        try:
            self.tokens = sqlglot.Dialect.get_or_raise(self.read).tokenize(self.text)
        except TokenError as exc:
            raise QueryRefused([f"{self.path}:{_error_line(exc)}: cannot be read as {self.dialect.name} SQL: {_first(exc)}"]) from None
        self._check_comments()
        statements = _statements(self.tokens)
        if not statements:
            raise QueryRefused([f"{self.path}:1: holds no statement; write one SELECT"])
        if len(statements) > 1:
            self.refuse(statements[1][0].line, "a second statement starts here; a query file holds exactly one "
                                               "SELECT (no `;` between statements)")
            raise QueryRefused(self.problems)
        statement = statements[0]
        sql = self.text[: statement[-1].end + 1].strip()
        try:
            tree = sqlglot.parse_one(sql, read=self.read)
        except ParseError as exc:
            raise QueryRefused([*self.problems,
                f"{self.path}:{_error_line(exc)}: not a SELECT the {self.dialect.name} parser understands: {_first(exc)}"
            ]) from None
        self._check_tree(tree)
        if self.problems:
            raise QueryRefused(self.problems)
        assert isinstance(tree, (exp.Select, exp.SetOperation)), "_check_tree refuses anything but a SELECT"
        outputs = self._outputs(tree)
        tables, columns = self._reads(tree)
        if self.problems:
            raise QueryRefused(self.problems)
        return SourceQuery(self.path, self.dialect.name, sql, tuple(outputs), tuple(tables),
                           tuple((t, tuple(c)) for t, c in columns.items()), tree.args.get("with_") is not None)

    # --- comments --------------------------------------------------------------------------------------
    def _check_comments(self) -> None:
        cursor = 0
        for token in self.tokens:
            for comment in token.comments:
                found = self.text.find(comment, cursor)
                found = found if found >= 0 else self.text.find(comment)
                cursor = max(found, 0) + len(comment)
                line = self.text.count("\n", 0, max(found, 0)) + 1
                body = comment.strip()
                if (self.text[max(found - 2, 0):found] == "/*" and body[:1] in ("!", "+")) or body.startswith("M!"):
                    self.refuse(line, "executable comment or optimizer hint (/*! */, /*M! */, /*+ */): MySQL and "
                                      "MariaDB run its content; remove it")
                elif "/*" in comment:
                    self.refuse(line, "a comment inside a comment: databases disagree where it ends, so it could "
                                      "hide a statement; remove the inner comment")
                elif ";" in comment or _HIDDEN_STATEMENT.search(comment):
                    self.refuse(line, "this comment reads like a statement (or holds a `;`); comments may not hide "
                                      "statements: reword or remove it")

    # --- the statement tree ----------------------------------------------------------------------------
    def _check_tree(self, tree: exp.Expr) -> None:
        if not isinstance(tree, (exp.Select, exp.SetOperation)):
            self.refuse(self._line(tree), f"is {_kind(tree)}, not a SELECT; a source query only reads")
            return
        for node in tree.walk():
            if isinstance(node, _WRITES):
                self.refuse(self._line(node), f"{_kind(node)} inside the query; a source query only reads "
                                              "(no INSERT, UPDATE, DELETE, MERGE, DDL or EXEC)")
            elif isinstance(node, exp.Into):
                self.refuse(self._line(node, ("INTO",)), "SELECT ... INTO creates a table; a source query only reads")
            elif isinstance(node, exp.Lock):
                self.refuse(self._line(node, ("FOR", "LOCK")), "a locking clause (FOR UPDATE/SHARE, LOCK IN SHARE MODE) "
                                                               "blocks MES writers; remove it")
            elif isinstance(node, exp.WithTableHint):
                self._check_hints(node)
            elif isinstance(node, (exp.Placeholder, exp.Parameter)):
                self.refuse(self._line(node, ("?", ":", "@", "$")), "a bind parameter; a source query has none: the "
                            "agent adds the watermark condition around it (see README, For DBAs)")
            elif isinstance(node, exp.Star) and not isinstance(node.parent, (exp.Count, exp.Anonymous, exp.Func)):
                self.refuse(self._line(node.parent or node, ("*",)), "`*` in a select list; name the columns (the "
                            "grants give SELECT on exactly the columns read, and drift is checked per column)")
            elif isinstance(node, exp.Func) and _function_name(node) in _SIDE_EFFECTS:
                self.refuse(self._line(node, (_function_name(node).upper(),)), f"function {_function_name(node)}() "
                            "changes state, waits or reaches outside the database; a source query only reads")
            elif isinstance(node, exp.Table) and node.catalog:
                self.refuse(self._line(node), f"{node.sql(self.read)} names another database; a flow reads one "
                                              "system (grants and drift checks are per system)")
        for clause, words in (("order", ("ORDER",)), ("limit", ("LIMIT", "TOP")), ("offset", ("OFFSET",)),
                              ("fetch", ("FETCH",))):
            if tree.args.get(clause):
                self.refuse(self._line(tree.args[clause], words), f"{words[0]} at the top of the query; the agent "
                            "orders and limits by the watermark itself (keep it in subqueries only)")

    def _check_hints(self, node: exp.WithTableHint) -> None:
        for hint in node.expressions:
            name = (hint.name or hint.sql(self.read)).upper()
            word = name.split("(")[0].strip()
            if word in _HARMLESS_HINTS:
                continue
            if word in _DIRTY_HINTS:
                reason = "reads uncommitted or skips locked rows, which a change capture then stages or misses"
            else:
                reason = "locks rows or tables and blocks MES writers"
            self.refuse(self._line(hint, (word,)), f"table hint {word} {reason}; remove it (use READ COMMITTED "
                        "SNAPSHOT on the database for non-blocking reads)")

    # --- output columns and their origin ---------------------------------------------------------------
    def _outputs(self, tree: exp.Select | exp.SetOperation) -> list[OutputColumn]:
        root = build_scope(tree)
        outputs: list[OutputColumn] = []
        for projection in tree.selects:
            identifier = projection.args.get("alias") if isinstance(projection, exp.Alias) else None
            target = projection.unalias()
            if identifier is None and isinstance(target, exp.Column):
                identifier = target.this
            line = self._line(projection)
            if not isinstance(identifier, exp.Identifier) or not identifier.name:
                self.refuse(line, f"the expression {projection.sql(self.read)} has no name; add `AS <name>`")
                continue
            name = identifier.name if identifier.quoted else self.dialect.unquoted_name(identifier.name)
            if any(self.dialect.same_column(o.name, name) for o in outputs):
                self.refuse(line, f"a second output column named {name!r}; give each column its own name")
                continue
            origin = None
            if isinstance(tree, exp.Select) and isinstance(target, exp.Column) and root is not None:
                origin = self._origin(root, target)
            outputs.append(OutputColumn(name, line, origin))
        return outputs

    def _origin(self, scope: Scope, column: exp.Column, depth: int = 0) -> tuple[str | None, str, str] | None:
        source = self._source_of(scope, column)
        if isinstance(source, exp.Table):
            return (*self._table_name(source), self._name(column.this))
        if isinstance(source, Scope) and depth < 32 and isinstance(source.expression, exp.Select):
            for projection in source.expression.selects:
                if projection.alias_or_name and self.dialect.same_column(self._name(_name_identifier(projection)),
                                                                          self._name(column.this)):
                    inner = projection.unalias()
                    return self._origin(source, inner, depth + 1) if isinstance(inner, exp.Column) else None
        return None

    # --- tables and columns read -----------------------------------------------------------------------
    def _reads(self, tree: exp.Expr) -> tuple[list[TableName], dict[TableName, list[str]]]:
        tables: list[TableName] = []
        columns: dict[TableName, list[str]] = {}
        for scope in traverse_scope(tree):
            for source in scope.sources.values():
                if isinstance(source, exp.Table):
                    name = self._table_name(source)
                    if name not in tables:
                        tables.append(name)
                        columns.setdefault(name, [])
            for column in scope.columns:
                if isinstance(column.this, exp.Star):
                    continue
                column_source = self._source_of(scope, column)
                if column_source is None and not column.table and len(scope.selected_sources) > 1:
                    self.refuse(self._line(column), f"column {column.name} is not qualified; in a query over several "
                                "tables write <alias>.<column>, so the grants and the drift check know its table")
                elif isinstance(column_source, exp.Table):
                    listed = columns.setdefault(self._table_name(column_source), [])
                    column_name = self._name(column.this)
                    if not any(self.dialect.same_column(column_name, c) for c in listed):
                        listed.append(column_name)
        return tables, columns

    def _source_of(self, scope: Scope, column: exp.Column) -> exp.Table | Scope | None:
        current: Scope | None = scope
        while current is not None:
            selected = {alias: source for alias, (_node, source) in current.selected_sources.items()}
            if column.table:
                alias = next((a for a in selected if a == column.table), None) or next(
                    (a for a in selected if a.lower() == column.table.lower()), None)  # aliases ignore case
                if alias is not None:
                    return selected[alias]
            elif len(selected) == 1:
                return next(iter(selected.values()))
            elif selected:
                return None
            current = current.parent
        return None

    def _table_name(self, table: exp.Table) -> TableName:
        schema = table.args.get("db")
        return (self._name(schema) if schema is not None else None, self._name(table.this))

    def _name(self, identifier: exp.Expr | None) -> str:
        if isinstance(identifier, exp.Identifier):
            return identifier.name if identifier.quoted else self.dialect.unquoted_name(identifier.name)
        return identifier.name if identifier is not None else ""

    # --- where -----------------------------------------------------------------------------------------
    def _line(self, node: exp.Expr, words: tuple[str, ...] = ()) -> int:
        lines = [n.meta["line"] for n in node.walk() if isinstance(n, exp.Expression) and n.meta.get("line")]
        if lines:
            return min(lines)
        for token in self.tokens:
            if token.text.upper() in words:
                return token.line
        return self.tokens[0].line if self.tokens else 1


def _statements(tokens: list[Token]) -> list[list[Token]]:
    groups: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            groups.append([])
        else:
            groups[-1].append(token)
    return [g for g in groups if g]


def _name_identifier(projection: exp.Expr) -> exp.Expr | None:
    if isinstance(projection, exp.Alias):
        return projection.args.get("alias")
    return projection.this if isinstance(projection, exp.Column) else None


def _function_name(node: exp.Func) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return node.sql_name().lower()


def _kind(node: exp.Expr) -> str:
    word = str(node.this).upper() if isinstance(node, exp.Command) else type(node).__name__.upper()
    article = "an" if word[:1] in "AEIOU" else "a"
    return f"{article} {word} {'command' if isinstance(node, exp.Command) else 'statement'}"


def _error_line(exc: Exception) -> int:
    errors = getattr(exc, "errors", None) or []
    if errors and errors[0].get("line"):
        return int(errors[0]["line"])
    match = re.search(r"[Ll]ine[: ]+(\d+)", str(exc))
    return int(match.group(1)) if match else 1


def _first(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or []
    if errors and errors[0].get("description"):
        return str(errors[0]["description"])
    return str(exc).splitlines()[0]
