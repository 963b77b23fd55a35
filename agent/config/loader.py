"""Loading the configuration file: YAML in, validated models out, every problem reported as file:line.

Loading happens in three steps so that each error can name its line:
1. compose the YAML into nodes (line numbers), build each value with PyYAML's safe constructor, expand
   ${ENV} in scalar values;
2. validate with pydantic models (agent/config/models.py; `extra="forbid"`, so a typo is an error, with the
   nearest valid key);
3. cross-check references between sections (agent/config/checks.py: a flow's source and target systems
   exist, ...).
The configuration never reads secrets: agent/connect.py reads `password_file` when it opens an engine.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from agent.config.checks import cross_check
from agent.config.loaded import LoadedConfig, line_of, suggest
from agent.config.models import AgentConfig
from agent.errors import ConfigError

ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_config(path: str | Path) -> LoadedConfig:
    """Read, expand and validate a configuration file. Raises ConfigError listing every problem."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file ({exc.strerror})"]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text; save the file as UTF-8"]) from exc
    try:
        node = yaml.compose(text)
    except RecursionError as exc:
        raise ConfigError([f"{path}: not valid YAML: lists or mappings nested too deeply"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(path, text, exc)]) from exc
    if node is None:
        raise ConfigError([f"{path}:1: the file holds no configuration (it is empty or only comments); see "
                           "config.example.yaml for a complete example"])
    lines: dict[tuple[str, ...], int] = {}
    value_problems: list[str] = []  # values YAML cannot build, ${VAR}s that are not set
    data = _NodeReader(path, text, lines, value_problems).read(node, ())
    try:
        model = AgentConfig.model_validate(data)
    except ValidationError as exc:
        # A value already reported (unset ${VAR}, unreadable tag) would only repeat its problem as a validation error.
        reported = {p.split(": ", 1)[0] for p in value_problems}
        found = [_describe_error(path, lines, error) for error in exc.errors()]
        raise ConfigError(_by_line(value_problems + [f for f in found if f.split(": ", 1)[0] not in reported])) from exc
    if value_problems:
        raise ConfigError(_by_line(value_problems))
    loaded = LoadedConfig(path=path, model=_with_absolute_paths(model, path.parent), lines=lines)
    problems = cross_check(loaded)
    if problems:
        raise ConfigError(_by_line(problems))
    return loaded


def _yaml_problem(path: Path, text: str, exc: yaml.YAMLError) -> str:
    """`file:line: not valid YAML: ...` for a parser, scanner or reader error."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else text.count("\n", 0, getattr(exc, "position", 0)) + 1
    if isinstance(exc, yaml.reader.ReaderError):
        problem = f"{exc.reason} (character U+{exc.character:04X}); remove it"
    else:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{path}:{line}: not valid YAML: {problem}"


def _by_line(problems: list[str]) -> list[str]:
    """Problems in file order (each starts with `file:line:`), each on one line: a key or value from the file
    may hold a line break or control character, shown escaped."""

    def line(problem: str) -> int:
        match = re.match(r"^.*?:(\d+): ", problem)
        return int(match.group(1)) if match else 0

    return sorted((_printable(p) for p in problems), key=line)


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _with_absolute_paths(model: AgentConfig, folder: Path) -> AgentConfig:
    """Query files resolve against the configuration file's folder, once, so every module sees one path."""
    flows = {
        name: flow.model_copy(update={"query": (folder / flow.query).resolve()})
        if flow.query is not None and not flow.query.is_absolute() else flow
        for name, flow in model.flows.items()
    }
    return model.model_copy(update={"flows": flows})


# What a standard YAML tag asks for (messages name it as !!int, ...).
_YAML_TAG = "tag:yaml.org,2002:"
_TAG_ASKS_FOR = {
    "str": "text", "int": "an integer", "float": "a number", "bool": "true or false", "null": "no value",
    "timestamp": "a date or time (2024-01-31, 2024-01-31 06:00:00)", "binary": "base64 data", "map": "a mapping",
    "seq": "a list", "set": "a set", "omap": "an ordered mapping", "pairs": "a list of pairs",
}
_PLAIN_COLLECTION_TAGS: dict[type[yaml.Node], str] = {yaml.MappingNode: f"{_YAML_TAG}map", yaml.SequenceNode: f"{_YAML_TAG}seq"}
_MAX_VALUES = 100_000  # aliases can make a small file expand to billions of values


class _NodeReader:
    """Composed YAML nodes -> Python values, recording each key's line. A value PyYAML's safe constructor
    cannot build (a tag that does not fit its value, an unknown tag, ...) becomes a problem at its line, and
    its text stands in for it, so that validation goes on and every problem is listed."""

    def __init__(self, path: Path, text: str, lines: dict[tuple[str, ...], int], problems: list[str]):
        self.path, self.text, self.lines, self.problems = path, text, lines, problems
        self.constructor = yaml.constructor.SafeConstructor()
        self.open: set[int] = set()  # nodes being read: an alias back into one of them would never end
        self.count = 0

    def read(self, node: yaml.Node, loc: tuple[str, ...]) -> Any:
        self.lines[loc] = node.start_mark.line + 1
        self.count += 1
        if self.count > _MAX_VALUES:
            raise ConfigError([f"{self.where(node)}: more than {_MAX_VALUES} values; do aliases (*name) repeat "
                               "large parts of the file? Write the configuration out"])
        if id(node) in self.open:
            self.problem(node, loc, "this alias refers to a value that contains it; write the value out")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, loc)
        if node.tag != _PLAIN_COLLECTION_TAGS[type(node)]:
            self.problem(node, loc, f"the YAML tag {_shown(node.tag)} does not fit here; remove it (the "
                                    "configuration uses plain mappings and lists)")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, loc)
            return [self.read(item, loc + (str(i),)) for i, item in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, loc: tuple[str, ...]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, loc)
            if key is None:
                continue
            result[key] = self.read(value_node, loc + (key,))
            self.lines[loc + (key,)] = key_node.start_mark.line + 1
        return result

    def key(self, node: yaml.Node, loc: tuple[str, ...]) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, loc, "a key must be a plain word, not a list or mapping")
            return None
        if node.tag == f"{_YAML_TAG}merge":
            self.problem(node, loc, "`<<` (a YAML merge key) is not supported; write the keys out")
            return None
        return str(self.scalar(node, loc))

    def scalar(self, node: yaml.ScalarNode, loc: tuple[str, ...]) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except Exception:
            if self.tagged(node) or node.tag in yaml.SafeLoader.yaml_constructors:
                self.problem(node, loc, self.unreadable(node))
                return node.value
            value = node.value  # a plain `=` or `<<`: PyYAML resolves it to a tag it cannot build; it is text
        if isinstance(value, str) and "${" in value:
            value = _expand_env(value, self.where(node), self.problems)
        return value

    def unreadable(self, node: yaml.ScalarNode) -> str:
        """Why the safe constructor refused a scalar, in words (PyYAML's own messages name its internals)."""
        kind = node.tag.removeprefix(_YAML_TAG) if node.tag.startswith(_YAML_TAG) else None
        if node.tag not in yaml.SafeLoader.yaml_constructors or kind not in _TAG_ASKS_FOR:
            return f"unknown YAML tag {_shown(node.tag)}; remove it (the configuration uses plain YAML values)"
        value = _shorten(node.value)
        if self.tagged(node):
            return (f"the YAML tag {_shown(node.tag)} asks for {_TAG_ASKS_FOR[kind]}, and {value!r} is not; remove the "
                    "tag or fix the value")
        return f"{value!r} reads as {_TAG_ASKS_FOR[kind]} but is not a valid one; put it in quotes if it is text"

    def tagged(self, node: yaml.Node) -> bool:
        """The file gives the node a tag (`!!int 2s`, `&anchor !foo x`); else PyYAML resolved one from its text."""
        return re.match(r"(&\S+\s+)?!", self.text[node.start_mark.index:node.end_mark.index]) is not None

    def problem(self, node: yaml.Node, loc: tuple[str, ...], message: str) -> None:
        self.problems.append(f"{self.where(node)}: `{'.'.join(loc) or '(top level)'}`: {message}")

    def where(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"


def _shown(tag: str) -> str:
    return f"!!{tag.removeprefix(_YAML_TAG)}" if tag.startswith(_YAML_TAG) else tag


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _expand_env(value: str, where: str, problems: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            problems.append(f"{where}: environment variable {name} is not set (referenced as ${{{name}}})")
            return ""
        return os.environ[name]

    return ENV_REFERENCE.sub(replace, value)


def _describe_error(path: Path, lines: dict[tuple[str, ...], int], error: ErrorDetails) -> str:
    loc = tuple(str(part) for part in error["loc"] if not str(part).startswith(("function-", "tagged-union")))
    loc = tuple(part for part in loc if part not in ("ColumnMapping",))
    key = ".".join(loc) or "(top level)"
    where = f"{path}:{line_of(lines, loc)}"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return f"{where}: unknown key `{key}`{suggest(loc[-1], allowed)}"
    if error["type"] == "missing":
        return f"{where}: `{key}` is required"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: `{key}`: {message}"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    """Field names (and aliases) of the model at `loc`, walking the model classes from the top."""
    current: Any = AgentConfig
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) or next(
                (f for f in current.model_fields.values() if f.alias == part), None
            )
            if field is None:
                return []
            current = _unwrap(field.annotation)
        elif get_origin(current) is dict:
            current = _unwrap(get_args(current)[1])
        elif get_origin(current) is list:
            current = _unwrap(get_args(current)[0])
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or name for name, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) in (Annotated, Union) or type(annotation).__name__ == "UnionType":
        args = [a for a in get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation
