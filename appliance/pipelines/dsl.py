"""Reading `.prts/pipeline.yaml` into a ``PipelineSpec``, safely, with errors that say where.

The file comes from a repository anyone with push access writes to, and it is read by
the web process and the workers, so reading it must not cost more than the file is worth:

1. The size is checked before anything is parsed (``MAX_BYTES``).
2. A first pass reads the parser's events only (``_guard``): at most ``MAX_ALIASES``
   aliases, no alias inside the value it names, no explicit tag outside the core schema
   (``!!python/...``, ``!custom``), nesting at most ``MAX_DEPTH`` deep and at most
   ``MAX_NODES`` values once aliases are expanded, counted without expanding anything, so
   a "billion laughs" document is refused after a few dozen events.
   Then PyYAML's SafeLoader *composes* the document into nodes (each with its line and
   column); nothing is constructed, so no tag can build an object. libyaml's parser does
   both passes when PyYAML has it; the pure-Python one is the same parser, slower.
3. Plain scalars are typed by the YAML 1.2 core schema: ``true``/``false`` are booleans,
   ``yes``, ``on`` and ``2024-01-01`` stay text. Duplicate keys are an error.
4. The nodes become plain data, remembering each value's node, and ``schema.PIPELINE_SCHEMA``
   (the one description of the shape) validates it; each error is placed at its node.
5. What a schema cannot say is checked last: unique names, timeouts, cron expressions,
   matrix size, executor features.

Every problem is reported at once, each at ``file:line:column`` (1-based) with a hint of
what was expected. The needs graph (unknown names, cycles) is the planner's to check.

Nothing in the file is evaluated: ``${{ ... }}`` is text like any other, and variables
are handed to the shell, which expands ``$NAME`` when a step runs. A value can never
change the structure of the pipeline.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from typing import Any, Iterator

import jsonschema
import yaml
from croniter import croniter
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from appliance.pipelines import schema
from appliance.pipelines.spec import (EXECUTOR_FEATURES, EXECUTORS, Condition, JobSpec, PipelineError,
                                      PipelineSpec, Position, Problem, StageSpec, Step, Trigger)

DEFAULT_FILE = ".prts/pipeline.yaml"
MAX_BYTES = 1024 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 100_000  # values in the document once every alias is expanded
MAX_MATRIX_COMBINATIONS = 256
# A pipeline without a `triggers:` key runs on pushes and when started by hand.
DEFAULT_TRIGGERS = (Trigger("push"), Trigger("manual"))

_CORE = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, SEQ, MAP = (_CORE + t for t in ("str", "int", "float", "bool", "null", "seq", "map"))
_ALLOWED_TAGS = frozenset({STR, INT, FLOAT, BOOL, NULL, SEQ, MAP})

_BOOL_RE = re.compile(r"(?:true|True|TRUE|false|False|FALSE)\Z")
_INT_RE = re.compile(r"(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)\Z")
_FLOAT_RE = re.compile(r"(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))\Z")
_NULL_RE = re.compile(r"(?:~|null|Null|NULL|)\Z")
_DURATION_PART = re.compile(r"([0-9]+)([hms])")


def _shown_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


class _Refused(Exception):
    """The document is refused before it is composed: ``mark`` says where."""

    def __init__(self, mark, message: str, hint: str = ""):
        super().__init__(message)
        self.mark, self.message, self.hint = mark, message, hint


def _core_schema(loader: type) -> type:
    """Type plain scalars by the YAML 1.2 core schema instead of SafeLoader's YAML 1.1 (no
    yes/on booleans, sexagesimal numbers, timestamps or merge keys)."""
    loader.yaml_implicit_resolvers = {}
    for tag, regexp, first in ((BOOL, _BOOL_RE, "tTfF"), (INT, _INT_RE, "-+0123456789"),
                               (FLOAT, _FLOAT_RE, "-+0123456789."), (NULL, _NULL_RE, ["~", "n", "N", ""])):
        for ch in first:
            loader.yaml_implicit_resolvers.setdefault(ch, []).append((tag, regexp))
    return loader


@_core_schema
class _PureLoader(yaml.SafeLoader):
    pass


if getattr(yaml, "__with_libyaml__", False):
    @_core_schema
    class _LibyamlLoader(yaml.CSafeLoader):
        pass

    _LOADER: type = _LibyamlLoader
else:  # PyYAML built without libyaml: the same checks, about ten times slower
    _LOADER = _PureLoader


def _guard(text: str, loader_class: type) -> None:
    """Read the document's events (no nodes are made) and refuse it at the first sign that
    it costs more than a pipeline file may: the limits of the module docstring. Sizes and
    heights of anchored values are remembered, so an alias is counted as what it expands
    to without expanding it."""
    loader = loader_class(text)
    # Open collections: [values so far, height of the tallest child, anchor, start mark].
    stack: list[list] = []
    anchors: dict[str, tuple[int, int]] = {}
    aliases = 0

    def add(size: int, height: int, mark) -> None:
        if len(stack) + height > MAX_DEPTH:
            expanded = " once aliases are expanded" if height > 1 else ""
            raise _Refused(mark, f"values are nested more than {MAX_DEPTH} levels deep{expanded}",
                           "a pipeline file needs only a few levels")
        if stack:
            top = stack[-1]
            top[0] += size
            top[1] = max(top[1], height)
            if top[0] > MAX_NODES:
                raise _Refused(top[3], f"the document expands to more than {MAX_NODES:,} values",
                               "aliases must not multiply the document (a \"billion laughs\" file)")

    try:
        while loader.check_event():
            event = loader.get_event()
            tag = getattr(event, "tag", None)
            if tag not in (None, "!") and tag not in _ALLOWED_TAGS:
                raise _Refused(event.start_mark, f"the tag {_shown_tag(tag)} is not allowed",
                               "pipeline files use plain YAML values only; quote the text if it is meant literally")
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise _Refused(event.start_mark, f"more than {MAX_ALIASES} aliases",
                                   "repeat the values instead of referring to them so often")
                if any(frame[2] == event.anchor for frame in stack):
                    raise _Refused(event.start_mark, f"the alias *{event.anchor} is inside the value it refers to",
                                   "an alias may refer only to a value that is already complete")
                # An undefined alias is left for the composer, which names it.
                add(*anchors.get(event.anchor, (1, 1)), event.start_mark)
            elif isinstance(event, yaml.ScalarEvent):
                add(1, 1, event.start_mark)
                if event.anchor is not None:
                    anchors[event.anchor] = (1, 1)
            elif isinstance(event, yaml.CollectionStartEvent):
                add(1, 1, event.start_mark)  # counts the collection itself, checks the depth
                stack.append([0, 0, event.anchor, event.start_mark])
            elif isinstance(event, yaml.CollectionEndEvent):
                size, height, anchor, mark = stack.pop()
                if stack:  # the collection was counted as 1 high when it started
                    add(size, height + 1, mark)
                if anchor is not None:
                    anchors[anchor] = (size + 1, height + 1)
    finally:
        loader.dispose()


# -- from nodes to data ---------------------------------------------------------------------

Path = tuple  # of str keys and int indexes, from the document's root


class _Document:
    """The document as plain data, and the node behind every value and key."""

    def __init__(self, file: str):
        self.file = file
        self.values: dict[Path, Node] = {}
        self.keys: dict[Path, Node] = {}
        self.problems: list[Problem] = []

    def position(self, mark) -> Position:
        return Position(self.file, mark.line + 1, mark.column + 1)

    def at(self, path: Path, *, key: bool = False) -> Position:
        """Where the value (or, with ``key``, the key) at ``path`` was written; the nearest
        enclosing value when the path is not in the document."""
        if key and path in self.keys:
            return self.position(self.keys[path].start_mark)
        while path not in self.values and path:
            path = path[:-1]
        node = self.values.get(path)
        return self.position(node.start_mark) if node is not None else Position(self.file, 1, 1)

    def problem(self, mark_or_path, message: str, hint: str = "", *, key: bool = False) -> None:
        position = self.at(mark_or_path, key=key) if isinstance(mark_or_path, tuple) else self.position(mark_or_path)
        self.problems.append(Problem(position, message, hint))

    def text(self, path: Path) -> str:
        """A scalar as the text it was written as: ``1.10`` stays "1.10", booleans are
        "true"/"false"."""
        node = self.values[path]
        if node.tag == BOOL:
            return node.value.lower()
        return node.value

    def to_data(self, node: Node, path: Path) -> Any:
        self.values[path] = node
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != SEQ:
                self.problem(node.start_mark, f"the tag {_shown_tag(node.tag)} does not fit a list")
            return [self.to_data(child, path + (i,)) for i, child in enumerate(node.value)]
        return self._scalar(node)

    def _mapping(self, node: MappingNode, path: Path) -> dict:
        if node.tag != MAP:
            self.problem(node.start_mark, f"the tag {_shown_tag(node.tag)} does not fit a mapping")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node.start_mark, "a key must be plain text, not a list or mapping",
                             "write `key: value`")
                continue
            key = key_node.value
            if path + (key,) in self.keys:
                first = self.keys[path + (key,)].start_mark
                self.problem(key_node.start_mark, f"duplicate key `{key}`",
                             f"it is already set at line {first.line + 1}, column {first.column + 1}")
                continue
            self.keys[path + (key,)] = key_node
            out[key] = self.to_data(value_node, path + (key,))
        return out

    def _scalar(self, node: ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag == STR:
            return text
        try:
            if tag == NULL and _NULL_RE.match(text):
                return None
            if tag == BOOL and _BOOL_RE.match(text):
                return text.lower() == "true"
            if tag == INT and _INT_RE.match(text):
                if text.startswith(("0o", "0x")):
                    return int(text[2:], 8 if text[1] == "o" else 16)
                return int(text)
            if tag == FLOAT and _FLOAT_RE.match(text):
                lowered = text.lower()
                if "inf" in lowered or "nan" in lowered:
                    return math.nan if "nan" in lowered else (-math.inf if lowered.startswith("-") else math.inf)
                return float(text)
        except ValueError:  # more digits than Python converts: a number no key here takes
            return text
        self.problem(node.start_mark, f"{text!r} is not a value of the tag {_shown_tag(tag)}")
        return text


def _compose(text: str, loader_class: type | None = None) -> Node | None:
    """The document's node tree, after ``_guard`` found it safe to make."""
    loader_class = loader_class or _LOADER
    _guard(text, loader_class)
    loader = loader_class(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


_WORD_END = re.compile(r"[\s,\[\]{}]")
_YAML_HINTS = (
    ("mapping values are not allowed", "check the indentation, and quote text that contains \": \""),
    ("found undefined alias", "define the anchor (&name) before the alias (*name) that refers to it"),
    ("found duplicate anchor", "give each anchor (&name) a different name"),
    ("expected a single document", "a pipeline file is one YAML document: remove the `---` separators"),
    ("could not find expected ':'", "a key must be followed by `: `"),
    ("found unexpected end of stream", "a quote or bracket is not closed"),
)


def _yaml_problem(exc: yaml.YAMLError, text: str, file: str) -> Problem:
    """A parser's error as a problem. libyaml and the pure-Python parser place errors alike
    but word them differently, so hints go by the words both use and by the source."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line, mark.column) if mark is not None else (0, 0)
        source_line = (text.split("\n")[line:line + 1] or [""])[0]
        at = source_line[column:]
        message = (exc.problem or exc.context or "not valid YAML").rstrip()
        context = exc.context or ""
        first = f" (the first at line {exc.context_mark.line + 1})" if exc.context_mark is not None else ""
        word = _WORD_END.split(at, maxsplit=1)[0]  # an alias or anchor where the error is
        if "undefined alias" in message and at.startswith("*"):
            message = f"found undefined alias {word}"
        elif "duplicate anchor" in context and at.startswith("&"):
            message = f"found duplicate anchor {word}{first}"
        elif "single document" in context:
            message = f"found another document{first}"
        elif context and exc.problem and exc.context_mark is not None:
            message = f"{message} ({context} at line {exc.context_mark.line + 1})"
        if at.startswith("\t") or "tab character" in message:
            hint = "indent with spaces: YAML does not allow tabs for indentation"
        else:
            hint = next((h for needle, h in _YAML_HINTS if needle in message or needle in context),
                        "the file is not valid YAML")
        return Problem(Position(file, line + 1, column + 1), f"YAML: {message}", hint)
    if isinstance(exc, yaml.reader.ReaderError):
        index = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, index) + 1
        column = index - (text.rfind("\n", 0, index) + 1) + 1
        return Problem(Position(file, line, column), "the file holds a control character YAML does not allow",
                       "remove it, or write it as an escape in a double-quoted string (\"\\x07\")")
    return Problem(Position(file, 1, 1), f"YAML: {exc}", "the file is not valid YAML")


def _decode(source: str | bytes, file: str) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
        if len(raw) > MAX_BYTES:
            raise PipelineError([_too_large(len(raw), file)])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            column = len(raw[raw.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
            raise PipelineError([Problem(Position(file, line, column), "the file is not UTF-8 text",
                                         "save the file as UTF-8")]) from None
    if not isinstance(source, str):
        raise TypeError(f"a pipeline file is text or bytes, not {type(source).__name__}")
    if len(source) > MAX_BYTES:  # a character is at least a byte: refused without encoding
        raise PipelineError([_too_large(len(source), file)])
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: no file holds one
        line = source.count("\n", 0, exc.start) + 1
        column = exc.start - (source.rfind("\n", 0, exc.start) + 1) + 1
        raise PipelineError([Problem(Position(file, line, column), "the text holds a character that is not Unicode",
                                     "save the file as UTF-8")]) from None
    if size > MAX_BYTES:
        raise PipelineError([_too_large(size, file)])
    return source


def _too_large(size: int, file: str) -> Problem:
    # ``size`` may count characters of a str: at least that many bytes.
    return Problem(Position(file, 1, 1), f"the file is {size:,} bytes or more; the limit is {MAX_BYTES:,} bytes",
                   "a pipeline file describes jobs; move data and long scripts into the repository")


# -- schema errors --------------------------------------------------------------------------


def _pattern(validator, pattern: str, instance: Any, subschema: dict) -> Iterator[jsonschema.ValidationError]:
    # Python's "$" also matches before a final newline, ECMA 262's (the schema's dialect)
    # does not: "name\n" must not pass as one line of text.
    if isinstance(instance, str) and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    jsonschema.Draft202012Validator.check_schema(schema.PIPELINE_SCHEMA)
    cls = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})
    return cls(schema.PIPELINE_SCHEMA)


_TYPE_PHRASES = {"string": "text", "integer": "an integer", "number": "a number", "boolean": "true or false",
                 "object": "a mapping (key: value)", "array": "a list", "null": "nothing"}
_LIST_ITEMS = {"stages": "stage", "jobs": "job", "steps": "step", "triggers": "trigger"}


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:57] + "...", ensure_ascii=False)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _subject(data: Any, path: Path) -> str:
    """How a person names the value at ``path``: `timeout` of job "Test", step 2 of job
    "Test", item 1 of `needs` of stage "Deploy", ..."""
    if not path:
        return "the pipeline file"
    if isinstance(path[-1], int):
        number = path[-1] + 1
        kind = _LIST_ITEMS.get(path[-2]) if len(path) >= 2 else None
        item = _lookup(data, path)
        if kind in ("stage", "job") and isinstance(item, dict) and isinstance(item.get("name"), str):
            return f'{kind} "{item["name"]}"'
        if kind in ("job", "step"):
            return f"{kind} {number} of {_subject(data, path[:-2])}"
        if kind:
            return f"{kind} {number}"
        return f"item {number} of {_subject(data, path[:-1])}"
    last = max((i for i, part in enumerate(path) if isinstance(part, int)), default=-1)
    inner = "`" + ".".join(str(part) for part in path[last + 1:]) + "`"
    return inner if last < 0 else f"{inner} of {_subject(data, path[:last + 1])}"


def _lookup(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _expected(phrase: str) -> str:
    return f"expected {phrase}"


_Found = Iterator[tuple[Position, str, str]]  # (where, message, hint)


def _schema_problems(doc: _Document, data: Any, error: jsonschema.ValidationError) -> _Found:
    path = tuple(error.absolute_path)
    subject = _subject(data, path)
    subschema = error.schema if isinstance(error.schema, dict) else {}
    custom = subschema.get("errorMessage")
    v, value, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.absolute_schema_path:
        key = str(instance)
        yield doc.at(path + (key,), key=True), f"the key `{key}` in {subject} is not allowed", \
            _expected(custom) if custom else error.message
        return
    if v == "additionalProperties" and isinstance(instance, dict):
        known = list(subschema.get("properties", {}))
        for key in instance:
            if key in known:
                continue
            hint = f"expected one of: {', '.join(known)}" if known else "expected no keys here"
            close = difflib.get_close_matches(key, known, n=1)
            if close:
                hint = f"did you mean `{close[0]}`? {hint}"
            if key == "<<":
                hint = "merge keys (<<) are not supported: write the keys out"
            yield doc.at(path + (key,), key=True), f"unknown key `{key}` in {subject}", hint
        return
    if v == "required" and isinstance(instance, dict):
        missing = [k for k in value if k not in instance]
        yield doc.at(path), f"{subject} has no `{'`, `'.join(missing)}`", \
            _expected("the keys " + ", ".join(value))
        return
    if custom and v not in _COUNTING:
        yield doc.at(path), f"{subject} is {_describe(instance)}", _expected(custom)
        return
    for position, message, hint in _generic_problem(doc.at(path), subject, error):
        yield position, message, f"{hint}; {custom}" if custom else hint


_COUNTING = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties", "uniqueItems")


def _generic_problem(at: Position, subject: str, error: jsonschema.ValidationError) -> _Found:
    v, value, instance = error.validator, error.validator_value, error.instance
    count = len(instance) if isinstance(instance, (str, list, dict)) else 0
    if v == "type":
        types = [value] if isinstance(value, str) else list(value)
        yield at, f"{subject} is {_describe(instance)}", _expected(" or ".join(_TYPE_PHRASES[t] for t in types))
    elif v == "enum":
        yield at, f"{subject} is {_describe(instance)}", _expected("one of " + ", ".join(map(str, value)))
    elif v == "const":
        yield at, f"{subject} is {_describe(instance)}", _expected(repr(value))
    elif v in ("minItems", "minLength", "minProperties") and count == 0:
        yield at, f"{subject} is empty", _expected({"minItems": "at least one item", "minLength": "some text",
                                                      "minProperties": "at least one key"}[v])
    elif v in ("minItems", "minProperties"):
        yield at, f"{subject} has {count} {'items' if v == 'minItems' else 'keys'}", _expected(f"at least {value}")
    elif v in ("maxItems", "maxProperties"):
        yield at, f"{subject} has {count} {'items' if v == 'maxItems' else 'keys'}", _expected(f"at most {value}")
    elif v == "maxLength":
        yield at, f"{subject} is {count} characters long", _expected(f"at most {value}")
    elif v in ("minimum", "maximum"):
        yield at, f"{subject} is {_describe(instance)}", \
            _expected(f"{'at least' if v == 'minimum' else 'at most'} {value}")
    elif v == "uniqueItems":
        yield at, f"{subject} lists a value twice", _expected("each value once")
    elif v == "pattern":
        yield at, f"{subject} is {_describe(instance)}", _expected(f"text matching {value}")
    else:
        yield at, f"{subject}: {error.message}", ""


# -- what the schema cannot say -------------------------------------------------------------


def parse_duration(value: int | str) -> int:
    """Seconds of a timeout: an integer, or "90s", "10m", "1h30m"."""
    if isinstance(value, int):
        return value
    if not re.fullmatch(schema.DURATION, value):
        raise ValueError(f"{value!r} is not a duration")
    factor = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * factor[unit] for n, unit in _DURATION_PART.findall(value))


class _Builder:
    """Turns schema-valid data into the spec, checking what is left to check."""

    def __init__(self, doc: _Document, data: dict):
        self.doc, self.data = doc, data

    def problem(self, path: Path, message: str, hint: str = "", *, key: bool = False) -> None:
        self.doc.problem(path, message, hint, key=key)

    def position(self, path: Path) -> Position:
        return self.doc.at(path)

    def build(self) -> PipelineSpec:
        data = self.data
        triggers = DEFAULT_TRIGGERS if "triggers" not in data else tuple(
            self.trigger(("triggers", i), item) for i, item in enumerate(data["triggers"]))
        variables = self.variables(("variables",), data.get("variables") or {})
        stages = []
        first_stage: dict[str, Path] = {}
        for i, stage in enumerate(data["stages"]):
            path = ("stages", i)
            if stage["name"] in first_stage:
                self.duplicate(path + ("name",), "stage", stage["name"], first_stage[stage["name"]])
            first_stage.setdefault(stage["name"], path + ("name",))
            stages.append(self.stage(path, stage))
        return PipelineSpec(version=data["version"], name=data["name"], triggers=triggers, variables=variables,
                            stages=tuple(stages), file=self.doc.file)

    def duplicate(self, path: Path, kind: str, name: str, first: Path) -> None:
        at = self.position(first)
        self.problem(path, f"two {kind}s are named {name!r}",
                     f"{kind} names must be unique{' within a stage' if kind == 'job' else ''}; the first is at "
                     f"line {at.line}, column {at.column}")

    def trigger(self, path: Path, item: dict) -> Trigger:
        (event, body), = item.items()
        body = body or {}
        position = self.position(path)
        fields = {name: tuple(body.get(name, ())) for name in ("branches", "tags", "paths", "paths_ignore", "types")
                  if name in body}
        if event == "schedule":
            cron = " ".join(body["cron"].split())
            if len(cron.split(" ")) != 5 or not croniter.is_valid(cron):
                self.problem(path + ("schedule", "cron"), f"{body['cron']!r} is not a cron expression",
                             "expected five fields: minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\"")
            return Trigger("schedule", cron=cron, position=position)
        return Trigger(event, position=position, **fields)

    def variables(self, path: Path, mapping: dict) -> tuple[tuple[str, str], ...]:
        return tuple((name, self.doc.text(path + (name,))) for name in mapping)

    def condition(self, path: Path, when: dict | None) -> Condition | None:
        if when is None:
            return None

        def listed(key: str) -> tuple[str, ...]:
            value = when.get(key, ())
            return (value,) if isinstance(value, str) else tuple(value)

        return Condition(branches=listed("branch"), events=listed("event"), paths=listed("paths"))

    def stage(self, path: Path, stage: dict) -> StageSpec:
        jobs = []
        first_job: dict[str, Path] = {}
        for j, job in enumerate(stage["jobs"]):
            job_path = path + ("jobs", j)
            if job["name"] in first_job:
                self.duplicate(job_path + ("name",), "job", job["name"], first_job[job["name"]])
            first_job.setdefault(job["name"], job_path + ("name",))
            jobs.append(self.job(job_path, job))
        return StageSpec(name=stage["name"], jobs=tuple(jobs),
                         needs=tuple(stage["needs"]) if "needs" in stage else None,
                         parallel=stage.get("parallel", True), when=self.condition(path + ("when",), stage.get("when")),
                         position=self.position(path))

    def job(self, path: Path, job: dict) -> JobSpec:
        timeout = None
        if "timeout" in job:
            timeout = parse_duration(job["timeout"])
            if not 1 <= timeout <= schema.MAX_TIMEOUT_SECONDS:
                self.problem(path + ("timeout",), f"the timeout {job['timeout']!r} of job {job['name']!r} is "
                             f"{'zero' if timeout < 1 else 'longer than 24h'}", "expected a duration from 1s to 24h")
        matrix = self.matrix(path + ("matrix",), job.get("matrix") or {})
        executor = job.get("executor", "")
        runs_on = executor or "local"
        for feature in ("image", "services"):
            if feature in job and feature not in EXECUTOR_FEATURES[runs_on]:
                able = [name for name in EXECUTORS if feature in EXECUTOR_FEATURES[name]]
                self.problem(path + (feature,), f"`{feature}` needs the {' or '.join(able)} executor; this job runs "
                             f"on the {runs_on} executor",
                             f"set `executor: {able[0]}` on the job, or remove `{feature}`", key=True)
        steps = tuple(self.step(path + ("steps", k), step) for k, step in enumerate(job["steps"]))
        return JobSpec(name=job["name"], steps=steps, matrix=matrix, needs=tuple(job.get("needs", ())),
                       timeout_seconds=timeout, retry=job.get("retry", 0),
                       allow_failure=job.get("allow_failure", False), environment=job.get("environment", ""),
                       variables=self.variables(path + ("variables",), job.get("variables") or {}),
                       when=self.condition(path + ("when",), job.get("when")), executor=executor,
                       image=job.get("image", ""), services=tuple(job.get("services", ())),
                       position=self.position(path))

    def matrix(self, path: Path, matrix: dict) -> tuple[tuple[str, tuple[str, ...]], ...]:
        out = []
        for key, values in matrix.items():
            texts = [self.doc.text(path + (key, i)) for i in range(len(values))]
            seen: set[str] = set()
            for i, text in enumerate(texts):
                if text in seen:
                    self.problem(path + (key, i), f"the matrix value {text!r} of `{key}` is listed twice",
                                 "expected each value once")
                seen.add(text)
            out.append((key, tuple(texts)))
        combinations = math.prod(len(values) for _, values in out)
        if combinations > MAX_MATRIX_COMBINATIONS:
            self.problem(path, f"the matrix makes {combinations:,} combinations",
                         f"expected at most {MAX_MATRIX_COMBINATIONS} per job")
        return tuple(out)

    def step(self, path: Path, step: dict) -> Step:
        position = self.position(path)
        if "run" in step:
            first_line = next((line.strip() for line in step["run"].splitlines() if line.strip()), "run")
            name = step.get("name") or (first_line if len(first_line) <= 80 else first_line[:77] + "...")
            return Step(kind="run", name=name, run=step["run"], position=position)
        artifact = step["artifact"]
        return Step(kind="artifact", name=step.get("name") or f"artifact {artifact['name']}", path=artifact["path"],
                    artifact=artifact["name"], position=position)


# -- the entry point ------------------------------------------------------------------------


def parse(text: str | bytes, file: str = DEFAULT_FILE) -> PipelineSpec:
    """The pipeline described by ``text``; raises ``PipelineError`` naming every problem."""
    source = _decode(text, file)
    try:
        root = _compose(source)
    except _Refused as exc:
        raise PipelineError([Problem(Position(file, exc.mark.line + 1, exc.mark.column + 1), exc.message,
                                     exc.hint)]) from None
    except yaml.YAMLError as exc:
        raise PipelineError([_yaml_problem(exc, source, file)]) from None
    except RecursionError:  # a guard above should have stopped it first; never crash on a file
        raise PipelineError([Problem(Position(file, 1, 1), "the document is nested too deeply",
                                     "a pipeline file needs only a few levels")]) from None
    if root is None:
        raise PipelineError([Problem(Position(file, 1, 1), "the file is empty",
                                     "expected `version: \"1.0\"`, `name:` and `stages:`")])
    doc = _Document(file)
    data = doc.to_data(root, ())
    _raise_if(doc.problems)
    seen: set[tuple[Position, str]] = set()
    for error in _validator().iter_errors(data):
        for position, message, hint in _schema_problems(doc, data, error):
            if (position, message) not in seen:
                seen.add((position, message))
                doc.problems.append(Problem(position, message, hint))
    _raise_if(doc.problems)
    spec = _Builder(doc, data).build()
    _raise_if(doc.problems)
    return spec


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise PipelineError(sorted(problems, key=lambda p: (p.position.line, p.position.column)))

