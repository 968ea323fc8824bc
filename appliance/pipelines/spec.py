"""What a parsed `.prts/pipeline.yaml` is, and what the planner makes of it.

``dsl.parse()`` turns YAML into a ``PipelineSpec``; ``planner.plan()`` turns a spec and
the event that triggered it into a ``Plan``: the jobs of one run, matrix expanded, with
their dependencies by key. These classes are plain frozen data: the run service stores a
plan as rows, and nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENTS = ("push", "tag", "pull_request", "schedule", "manual")
EXECUTORS = ("local", "docker", "kubernetes")
# What each executor can do beyond running commands; validation names the executors that
# support a key when a job asks the wrong one for it.
EXECUTOR_FEATURES = {"local": frozenset(), "docker": frozenset({"image", "services"}),
                     "kubernetes": frozenset({"image", "services"})}


@dataclass(frozen=True)
class Position:
    """Where something was written: 1-based line and column in ``file``."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    position: Position
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.position}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class PipelineError(ValueError):
    """The pipeline file is not valid; ``problems`` says every place and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(map(str, self.problems)))


@dataclass(frozen=True)
class Trigger:
    """One entry of ``triggers:``. Patterns are globs (``*`` within a path segment, ``**``
    across segments); an empty tuple means "any"."""

    event: str  # one of EVENTS
    branches: tuple[str, ...] = ()  # push: pushed branch; pull_request: target branch
    tags: tuple[str, ...] = ()  # tag
    paths: tuple[str, ...] = ()  # push / pull_request: fire only when a changed path matches
    paths_ignore: tuple[str, ...] = ()
    types: tuple[str, ...] = ()  # pull_request: opened, synchronize, reopened, closed
    cron: str = ""  # schedule
    position: Position | None = None


@dataclass(frozen=True)
class Condition:
    """A stage's or job's ``when:``; every given field must match (and), each field's
    list is a choice (or)."""

    branches: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    kind: str  # "run" | "artifact"
    name: str
    run: str = ""  # kind == "run": a shell script run with `sh -e`
    path: str = ""  # kind == "artifact": a file or directory relative to the workspace
    artifact: str = ""  # kind == "artifact": the artifact's name
    position: Position | None = None


@dataclass(frozen=True)
class JobSpec:
    name: str
    steps: tuple[Step, ...]
    matrix: tuple[tuple[str, tuple[str, ...]], ...] = ()  # ordered (key, values)
    needs: tuple[str, ...] = ()  # job names or stage names, in addition to the stage's needs
    timeout_seconds: int | None = None  # None: the appliance's default
    retry: int = 0
    allow_failure: bool = False
    environment: str = ""
    variables: tuple[tuple[str, str], ...] = ()
    when: Condition | None = None
    executor: str = ""  # "": the appliance's default executor
    image: str = ""
    services: tuple[str, ...] = ()
    position: Position | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    jobs: tuple[JobSpec, ...]
    needs: tuple[str, ...] | None = None  # None: the previous stage; (): nothing
    parallel: bool = True  # False: the stage's jobs run one after another, in order
    when: Condition | None = None
    position: Position | None = None


@dataclass(frozen=True)
class PipelineSpec:
    version: str
    name: str
    triggers: tuple[Trigger, ...]
    variables: tuple[tuple[str, str], ...]
    stages: tuple[StageSpec, ...]
    file: str = ".prts/pipeline.yaml"


@dataclass(frozen=True)
class Event:
    """What happened: the input to trigger matching and ``when`` conditions."""

    kind: str  # one of EVENTS
    ref: str  # full ref: refs/heads/main, refs/tags/v1
    commit: str
    changed_paths: tuple[str, ...] | None = None  # None: unknown (manual, schedule): filters pass
    pull_request_action: str = ""  # opened, synchronize, ...

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else ""

    @property
    def tag(self) -> str:
        return self.ref.removeprefix("refs/tags/") if self.ref.startswith("refs/tags/") else ""


@dataclass(frozen=True)
class PlannedJob:
    key: str  # unique in the run: "Build/Test [python=3.11]"
    name: str  # shown to people: "Test [python=3.11]"
    stage: str
    stage_index: int
    needs: tuple[str, ...]  # keys of planned jobs
    steps: tuple[Step, ...]
    env: tuple[tuple[str, str], ...]  # pipeline + job variables + matrix values, in that order
    matrix: tuple[tuple[str, str], ...] = ()
    timeout_seconds: int | None = None
    retry: int = 0
    allow_failure: bool = False
    environment: str = ""
    executor: str = ""
    skip_reason: str = ""  # non-empty: a `when` condition excluded the job; it is recorded as skipped


@dataclass(frozen=True)
class Plan:
    name: str
    jobs: tuple[PlannedJob, ...] = field(default_factory=tuple)  # topological order
