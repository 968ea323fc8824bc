"""From a pipeline and the event that happened to the jobs of one run.

``matches()`` says whether an event starts the pipeline at all (which trigger fired);
``plan()`` makes the run's DAG:

- Stages run in order: a stage without ``needs`` needs the stage before it, ``needs: []``
  needs nothing, ``needs: [A, B]`` needs those stages. A stage needing a stage means every
  job of the one needs every job of the other.
- A job's own ``needs`` add to its stage's: a stage name means all its jobs; ``Stage/Job``
  or a job name that is unique in the pipeline means that job (a name that is both a
  stage and a job means the stage; write ``Stage/Job`` for the job).
- ``parallel: false`` runs the stage's jobs one after another, in the order written
  (each matrix combination after the one before).
- A matrix makes one job per combination: key ``"Build/Test [python=3.11]"``, name
  ``"Test [python=3.11]"``; needing a matrix job means needing every combination.
- A ``when`` that does not hold (on the stage or the job) plans the job as skipped, with
  the reason; a job skipped so still satisfies its dependents' needs.

Unknown names and cycles are refused with a ``PipelineError`` naming them, and a run may
have at most ``MAX_JOBS`` jobs. Jobs come out in a topological order that keeps to the
file's order (stage by stage, job by job) wherever the needs allow.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict

from appliance.pipelines import globs
from appliance.pipelines.spec import (Condition, Event, JobSpec, PipelineError, PipelineSpec, Plan, PlannedJob,
                                      Position, Problem, StageSpec, Trigger)

MAX_JOBS = 1000
# Pull request actions a `pull_request` trigger without `types` fires on: not `closed`,
# which would run the pipeline of a branch nobody is working on any more.
DEFAULT_PULL_REQUEST_TYPES = ("opened", "synchronize", "reopened")

JobId = tuple[int, int]  # (stage index, job index) in the spec


# -- triggers -------------------------------------------------------------------------------


def paths_pass(paths: tuple[str, ...], paths_ignore: tuple[str, ...], changed: tuple[str, ...] | None) -> bool:
    """Path filters: some changed path must match ``paths`` (when given) and not match
    ``paths_ignore``. Unknown changes (``None``) pass every filter."""
    if changed is None or (not paths and not paths_ignore):
        return True
    return any((not paths or globs.match_any(paths, path)) and not globs.match_any(paths_ignore, path)
               for path in changed)


def _trigger_fires(trigger: Trigger, event: Event) -> bool:
    kind = event.kind
    if kind in ("manual", "schedule"):
        return trigger.event == kind
    if kind in ("push", "tag") and event.tag:
        # A tag arrives as a `tag` event (or a push of refs/tags/...): `tag` triggers and
        # push triggers that list `tags` take it.
        if trigger.event == "tag":
            return not trigger.tags or globs.match_any(trigger.tags, event.tag)
        if trigger.event == "push" and trigger.tags:
            return globs.match_any(trigger.tags, event.tag) and paths_pass(trigger.paths, trigger.paths_ignore,
                                                                           event.changed_paths)
        return False
    if kind == "push":
        if trigger.event != "push" or not event.branch:
            return False
        if trigger.branches:
            branch_ok = globs.match_any(trigger.branches, event.branch)
        else:
            branch_ok = not trigger.tags  # a push trigger with only `tags` ignores branches
        return branch_ok and paths_pass(trigger.paths, trigger.paths_ignore, event.changed_paths)
    if kind == "pull_request":
        if trigger.event != "pull_request":
            return False
        types = trigger.types or DEFAULT_PULL_REQUEST_TYPES
        if event.pull_request_action and event.pull_request_action not in types:
            return False
        if trigger.branches and not globs.match_any(trigger.branches, event.branch):
            return False
        return paths_pass(trigger.paths, trigger.paths_ignore, event.changed_paths)
    return False


def matches(spec: PipelineSpec, event: Event) -> Trigger | None:
    """The first trigger of ``spec`` that ``event`` fires, or None: the pipeline does not run.

    Branch and tag filters are globs against the event's branch or tag; for a pull request
    the branch is the target branch (``event.ref``). Manual and scheduled starts need a
    ``manual`` or ``schedule`` trigger (a file without ``triggers:`` has push and manual)."""
    return next((trigger for trigger in spec.triggers if _trigger_fires(trigger, event)), None)


# -- conditions -----------------------------------------------------------------------------


def skip_reason(condition: Condition | None, event: Event) -> str:
    """Why ``condition`` excludes the run of ``event``; "" when it holds."""
    if condition is None:
        return ""
    if condition.branches and not globs.match_any(condition.branches, event.branch):
        return f"when: branch {' or '.join(condition.branches)} did not match {event.branch or '(no branch)'}"
    if condition.events and event.kind not in condition.events:
        return f"when: event {' or '.join(condition.events)} did not match {event.kind}"
    if condition.paths and not paths_pass(condition.paths, (), event.changed_paths):
        return f"when: paths {' or '.join(condition.paths)} matched none of the changed paths"
    return ""


# -- the DAG --------------------------------------------------------------------------------


def _problem(spec: PipelineSpec, where: StageSpec | JobSpec | None, message: str, hint: str = "") -> Problem:
    position = where.position if where is not None and where.position is not None else Position(spec.file, 1, 1)
    return Problem(position, message, hint)


def _job_label(spec: PipelineSpec, job_id: JobId) -> str:
    stage = spec.stages[job_id[0]]
    return f"{stage.name}/{stage.jobs[job_id[1]].name}"


def _closest(name: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


class _Graph:
    """Stages and jobs of a spec with the needs between them resolved to ids."""

    def __init__(self, spec: PipelineSpec):
        self.spec = spec
        self.problems: list[Problem] = []
        self.stage_index = {stage.name: i for i, stage in enumerate(spec.stages)}
        self.jobs_named: dict[str, list[JobId]] = defaultdict(list)
        for si, stage in enumerate(spec.stages):
            for ji, job in enumerate(stage.jobs):
                self.jobs_named[job.name].append((si, ji))
        self.stage_needs = [self._stage_needs(si, stage) for si, stage in enumerate(spec.stages)]
        self.job_needs: dict[JobId, list[JobId]] = {}
        for si, stage in enumerate(spec.stages):
            for ji, job in enumerate(stage.jobs):
                self.job_needs[(si, ji)] = self._job_needs(si, ji, stage, job)

    def _stage_needs(self, si: int, stage: StageSpec) -> list[int]:
        if stage.needs is None:
            return [si - 1] if si > 0 else []
        needed = []
        for name in stage.needs:
            if name not in self.stage_index:
                hint = _closest(name, list(self.stage_index))
                if name in self.jobs_named:
                    hint = "a stage's needs name stages; put `needs` on a job to wait for a job. " + hint
                self.problems.append(_problem(self.spec, stage, f"stage {stage.name!r} needs {name!r}, "
                                                               "which is not a stage of this pipeline",
                                              (hint + f"stages: {', '.join(self.stage_index)}").strip()))
            elif self.stage_index[name] == si:
                self.problems.append(_problem(self.spec, stage, f"stage {stage.name!r} needs itself"))
            else:
                needed.append(self.stage_index[name])
        return needed

    def _job_needs(self, si: int, ji: int, stage: StageSpec, job: JobSpec) -> list[JobId]:
        needed: list[JobId] = [(d, j) for d in self.stage_needs[si] for j in range(len(self.spec.stages[d].jobs))]
        if not stage.parallel and ji > 0:
            needed.append((si, ji - 1))
        for name in job.needs:
            needed.extend(self._resolve(name, si, stage, job))
        return list(dict.fromkeys(needed))

    def _resolve(self, name: str, si: int, stage: StageSpec, job: JobSpec) -> list[JobId]:
        label = f"job {stage.name + '/' + job.name!r}"
        if name in self.stage_index:
            target = self.stage_index[name]
            if target == si:
                self.problems.append(_problem(self.spec, job, f"{label} needs its own stage {name!r}",
                                              "name the jobs of the stage it waits for, or set `parallel: false`"))
                return []
            return [(target, j) for j in range(len(self.spec.stages[target].jobs))]
        stage_name, sep, job_name = name.partition("/")
        if sep and stage_name in self.stage_index:
            target = self.stage_index[stage_name]
            found = [(target, j) for j, other in enumerate(self.spec.stages[target].jobs) if other.name == job_name]
            if found:
                return found
        named = self.jobs_named.get(name, [])
        if len(named) == 1:
            return named
        if len(named) > 1:
            where = ", ".join(f"{self.spec.stages[s].name}/{name}" for s, _ in named)
            self.problems.append(_problem(self.spec, job, f"{label} needs {name!r}, which names jobs in several "
                                                          "stages", f"write one of {where}"))
            return []
        choices = list(self.stage_index) + [_job_label(self.spec, j) for js in self.jobs_named.values() for j in js]
        self.problems.append(_problem(self.spec, job, f"{label} needs {name!r}, which is no stage or job of this "
                                                      "pipeline",
                                      (_closest(name, choices) + "name a stage, a job as Stage/Job, or a job whose "
                                                                 "name is unique").strip()))
        return []

    def stage_cycle(self) -> list[int] | None:
        return _find_cycle(range(len(self.spec.stages)), lambda s: self.stage_needs[s])

    def job_cycle(self) -> list[JobId] | None:
        return _find_cycle(sorted(self.job_needs), lambda j: self.job_needs[j])


def _find_cycle(nodes, edges) -> list | None:
    """A cycle of the graph as a list of nodes in the order they wait on each other,
    first repeated at the end; None for a DAG. Iterative: pipelines may be wide."""
    white, grey, black = 0, 1, 2
    colour: dict = {}
    for start in nodes:
        if colour.get(start, white) != white:
            continue
        stack = [(start, iter(edges(start)))]
        path = [start]
        colour[start] = grey
        while stack:
            node, children = stack[-1]
            for child in children:
                state = colour.get(child, white)
                if state == grey:
                    cycle = path[path.index(child):] + [child]
                    return cycle
                if state == white:
                    colour[child] = grey
                    stack.append((child, iter(edges(child))))
                    path.append(child)
                    break
            else:
                colour[node] = black
                stack.pop()
                path.pop()
    return None


def _topological(graph: _Graph) -> list[JobId]:
    """Kahn's algorithm taking the earliest job in file order whenever several are ready."""
    dependents: dict[JobId, list[JobId]] = defaultdict(list)
    waiting = {job: len(needs) for job, needs in graph.job_needs.items()}
    for job, needs in graph.job_needs.items():
        for need in needs:
            dependents[need].append(job)
    ready = [job for job, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        job = heapq.heappop(ready)
        order.append(job)
        for dependent in dependents[job]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order


def combinations(job: JobSpec) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the job's matrix in order, the first key varying slowest; one
    empty combination for a job without a matrix."""
    keys = [key for key, _ in job.matrix]
    return [tuple(zip(keys, values)) for values in itertools.product(*(values for _, values in job.matrix))]


def _suffix(combination: tuple[tuple[str, str], ...]) -> str:
    return f" [{', '.join(f'{k}={v}' for k, v in combination)}]" if combination else ""


def plan(spec: PipelineSpec, event: Event) -> Plan:
    """The jobs of a run of ``spec`` for ``event``, in topological order."""
    total = sum(math.prod(len(values) for _, values in job.matrix) for stage in spec.stages for job in stage.jobs)
    if total > MAX_JOBS:
        raise PipelineError([Problem(Position(spec.file, 1, 1), f"the pipeline makes {total:,} jobs "
                                     "(matrix combinations counted)", f"expected at most {MAX_JOBS:,} jobs in a run")])
    graph = _Graph(spec)
    if graph.problems:
        raise PipelineError(graph.problems)
    cycle = graph.stage_cycle()
    if cycle:
        names = " -> ".join(spec.stages[s].name for s in cycle)
        raise PipelineError([_problem(spec, spec.stages[cycle[0]], f"the stages' needs make a cycle: {names}",
                                      "a stage cannot wait, directly or through others, for itself")])
    job_cycle = graph.job_cycle()
    if job_cycle:
        names = " -> ".join(_job_label(spec, j) for j in job_cycle)
        first = spec.stages[job_cycle[0][0]].jobs[job_cycle[0][1]]
        raise PipelineError([_problem(spec, first, f"the jobs' needs make a cycle: {names}",
                                      "a job cannot wait, directly or through others, for itself")])

    variables = dict(spec.variables)
    expansions: dict[JobId, list[str]] = {}
    planned: list[PlannedJob] = []
    keys: dict[str, JobId] = {}
    for job_id in _topological(graph):
        si, ji = job_id
        stage, job = spec.stages[si], spec.stages[si].jobs[ji]
        reason = skip_reason(stage.when, event) or skip_reason(job.when, event)
        base = [key for need in graph.job_needs[job_id] for key in expansions[need]]
        previous = None  # parallel: false: what this combination waits for in its stage
        if not stage.parallel and ji > 0:
            # The previous job's last combination stands for all of them: they ran in a row.
            before = expansions[(si, ji - 1)]
            base, previous = [key for key in base if key not in before], before[-1]
        expansions[job_id] = []
        for combination in combinations(job):
            key = f"{stage.name}/{job.name}{_suffix(combination)}"
            if key in keys:
                raise PipelineError([_problem(spec, job, f"two jobs of stage {stage.name!r} would both be "
                                                         f"called {key!r}", "rename one of them")])
            keys[key] = job_id
            env = dict(variables)
            env.update(job.variables)
            env.update(combination)
            needs = tuple(dict.fromkeys(base + ([previous] if previous else [])))
            planned.append(PlannedJob(
                key=key, name=f"{job.name}{_suffix(combination)}", stage=stage.name, stage_index=si,
                needs=needs, steps=job.steps, env=tuple(env.items()), matrix=combination,
                timeout_seconds=job.timeout_seconds, retry=job.retry, allow_failure=job.allow_failure,
                environment=job.environment, executor=job.executor, skip_reason=reason))
            expansions[job_id].append(key)
            if not stage.parallel:
                previous = key
    return Plan(name=spec.name, jobs=tuple(planned))
