"""planner.matches() and planner.plan(): triggers, path filters, the DAG, matrix, `when`."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.pipelines import dsl, globs, planner
from appliance.pipelines.spec import (Event, JobSpec, PipelineError, PipelineSpec, Plan, StageSpec, Step)

HEAD = 'version: "1.0"\nname: p\n'


def spec_of(body: str):
    return dsl.parse(HEAD + textwrap.dedent(body).lstrip("\n"))


def push(branch: str = "main", paths=None) -> Event:
    return Event("push", f"refs/heads/{branch}", "c0ffee", None if paths is None else tuple(paths))


def keys(plan: Plan) -> list[str]:
    return [job.key for job in plan.jobs]


def by_key(plan: Plan) -> dict:
    return {job.key: job for job in plan.jobs}


def plan_error(body: str, event: Event | None = None) -> PipelineError:
    with pytest.raises(PipelineError) as info:
        planner.plan(spec_of(body), event or push())
    return info.value


# -- globs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pattern, name, matched", [
    ("main", "main", True), ("main", "main2", False), ("main", "xmain", False),
    ("release/*", "release/1.0", True), ("release/*", "release/1.0/hotfix", False), ("release/*", "release/", True),
    ("release/**", "release/1.0/hotfix", True), ("src/**", "src/a.py", True), ("src/**", "src/a/b/c.py", True),
    ("src/**", "src", False), ("src/**", "docs/src/a.py", False), ("src/", "src/a/b", True),
    ("**/*.py", "a.py", True), ("**/*.py", "x/y/a.py", True), ("**/*.py", "x/y/a.pyc", False),
    ("docs/**/index.md", "docs/index.md", True), ("docs/**/index.md", "docs/a/b/index.md", True),
    ("docs/**/index.md", "docs/aindex.md", False), ("*.md", "README.md", True), ("*.md", "docs/a.md", False),
    ("v?", "v1", True), ("v?", "v10", False), ("a?b", "a/b", False), ("**", "anything/at/all", True),
    ("[abc]", "[abc]", True), ("[abc]", "a", False), ("a.b", "axb", False), ("v1.*", "v1.2", True),
    ("feature-*", "feature-x/y", False), ("**/test_*.py", "tests/unit/test_x.py", True),
])
def test_globs(pattern, name, matched):
    assert globs.match(pattern, name) is matched


# -- triggers -------------------------------------------------------------------------------

TRIGGERS = """
triggers:
  - push: { branches: [main, "release/*"], paths: ["src/**"], paths_ignore: ["src/**/*.md"] }
  - pull_request: { branches: [main] }
  - tag: { tags: ["v*"] }
  - schedule: { cron: "0 2 * * *" }
stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
"""


def test_push_matches_branch_globs_and_path_filters():
    spec = spec_of(TRIGGERS)
    assert planner.matches(spec, push("main", ["src/app.py"])) is spec.triggers[0]
    assert planner.matches(spec, push("release/2.0", ["src/a/b/c.py"])) is spec.triggers[0]
    assert planner.matches(spec, push("release/2.0/x", ["src/a.py"])) is None
    assert planner.matches(spec, push("feature", ["src/app.py"])) is None
    assert planner.matches(spec, push("main", ["docs/index.md"])) is None
    assert planner.matches(spec, push("main", ["src/notes/readme.md"])) is None  # only ignored paths changed
    assert planner.matches(spec, push("main", ["src/notes/readme.md", "src/x.c"])) is spec.triggers[0]
    assert planner.matches(spec, push("main", [])) is None  # nothing changed
    assert planner.matches(spec, push("main", None)) is spec.triggers[0]  # unknown: the filters pass


def test_pull_requests_tags_and_schedules():
    spec = spec_of(TRIGGERS)
    pr = Event("pull_request", "refs/heads/main", "c", ("README",), pull_request_action="opened")
    assert planner.matches(spec, pr) is spec.triggers[1]
    assert planner.matches(spec, Event("pull_request", "refs/heads/dev", "c", pull_request_action="opened")) is None
    # Without `types`: opened, synchronize, reopened, not closed.
    assert planner.matches(spec, Event("pull_request", "refs/heads/main", "c", pull_request_action="synchronize"))
    assert planner.matches(spec, Event("pull_request", "refs/heads/main", "c", pull_request_action="closed")) is None
    assert planner.matches(spec, Event("tag", "refs/tags/v1.0", "c")) is spec.triggers[2]
    assert planner.matches(spec, Event("tag", "refs/tags/nightly", "c")) is None
    assert planner.matches(spec, Event("push", "refs/tags/v2", "c")) is spec.triggers[2]  # a tag pushed
    assert planner.matches(spec, Event("schedule", "refs/heads/main", "c")) is spec.triggers[3]
    assert planner.matches(spec, Event("manual", "refs/heads/main", "c")) is None  # no manual trigger


def test_pull_request_types_and_push_tags():
    spec = spec_of("""
        triggers:
          - pull_request: { types: [closed] }
          - push: { tags: ["v*"] }
        stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """)
    assert planner.matches(spec, Event("pull_request", "refs/heads/x", "c", pull_request_action="closed"))
    assert planner.matches(spec, Event("pull_request", "refs/heads/x", "c", pull_request_action="opened")) is None
    assert planner.matches(spec, Event("tag", "refs/tags/v3", "c")) is spec.triggers[1]
    assert planner.matches(spec, push("main")) is None  # a push trigger with only tags ignores branches


def test_without_triggers_key_push_and_manual_run_but_nothing_else():
    spec = spec_of("stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n")
    assert planner.matches(spec, push("any/branch", ["x"])).event == "push"
    assert planner.matches(spec, Event("manual", "refs/heads/main", "c")).event == "manual"
    assert planner.matches(spec, Event("schedule", "refs/heads/main", "c")) is None
    assert planner.matches(spec, Event("tag", "refs/tags/v1", "c")) is None
    assert planner.matches(spec, Event("pull_request", "refs/heads/main", "c", pull_request_action="opened")) is None
    empty = spec_of("triggers: []\nstages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]\n")
    assert planner.matches(empty, push()) is None
    assert planner.matches(empty, Event("manual", "refs/heads/main", "c")) is None


def test_manual_and_schedule_need_their_trigger():
    spec = spec_of("""
        triggers: [ { push: {} }, { manual: {} } ]
        stages: [ { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """)
    assert planner.matches(spec, Event("manual", "refs/heads/x", "c")) is spec.triggers[1]
    assert planner.matches(spec, Event("schedule", "refs/heads/main", "c")) is None


# -- the DAG --------------------------------------------------------------------------------


def test_stages_run_in_order_and_needs_empty_starts_at_once():
    plan = planner.plan(spec_of("""
        stages:
          - name: A
            jobs: [ { name: a1, steps: [ { run: x } ] }, { name: a2, steps: [ { run: x } ] } ]
          - name: B
            jobs: [ { name: b, steps: [ { run: x } ] } ]
          - name: Lint
            needs: []
            jobs: [ { name: lint, steps: [ { run: x } ] } ]
          - name: C
            needs: [A, Lint]
            jobs: [ { name: c, steps: [ { run: x } ] } ]
        """), push())
    jobs = by_key(plan)
    assert keys(plan) == ["A/a1", "A/a2", "B/b", "Lint/lint", "C/c"]
    assert jobs["A/a1"].needs == () and jobs["Lint/lint"].needs == ()
    assert jobs["B/b"].needs == ("A/a1", "A/a2")
    assert jobs["C/c"].needs == ("A/a1", "A/a2", "Lint/lint")
    assert (jobs["C/c"].stage, jobs["C/c"].stage_index, jobs["C/c"].name) == ("C", 3, "c")
    assert plan.name == "p"


def test_job_needs_name_jobs_and_stages():
    plan = planner.plan(spec_of("""
        stages:
          - name: Build
            jobs:
              - { name: compile, steps: [ { run: x } ] }
              - { name: docs, steps: [ { run: x } ] }
          - name: Test
            needs: []
            jobs:
              - { name: unit, needs: [compile], steps: [ { run: x } ] }
              - { name: e2e, needs: [Build/docs, unit], steps: [ { run: x } ] }
              - { name: all, needs: [Build], steps: [ { run: x } ] }
        """), push())
    jobs = by_key(plan)
    assert jobs["Test/unit"].needs == ("Build/compile",)
    assert jobs["Test/e2e"].needs == ("Build/docs", "Test/unit")
    assert jobs["Test/all"].needs == ("Build/compile", "Build/docs")
    order = keys(plan)
    assert order.index("Test/unit") > order.index("Build/compile")
    assert order.index("Test/e2e") > order.index("Test/unit")


def test_a_name_that_is_a_stage_and_a_job_means_the_stage():
    plan = planner.plan(spec_of("""
        stages:
          - name: Build
            jobs: [ { name: Build, steps: [ { run: x } ] }, { name: other, steps: [ { run: x } ] } ]
          - name: Ship
            needs: []
            jobs: [ { name: s, needs: [Build], steps: [ { run: x } ] }, { name: t, needs: [Build/Build], steps: [ { run: x } ] } ]
        """), push())
    assert by_key(plan)["Ship/s"].needs == ("Build/Build", "Build/other")
    assert by_key(plan)["Ship/t"].needs == ("Build/Build",)


def test_unknown_and_ambiguous_needs_are_named():
    error = plan_error("""
        stages:
          - name: Build
            jobs: [ { name: J, steps: [ { run: x } ] } ]
          - name: Deploy
            needs: [Biuld]
            jobs: [ { name: K, needs: [Nope, Build/Nope], steps: [ { run: x } ] } ]
        """)
    messages = [p.message for p in error.problems]
    assert messages == ["stage 'Deploy' needs 'Biuld', which is not a stage of this pipeline",
                        "job 'Deploy/K' needs 'Nope', which is no stage or job of this pipeline",
                        "job 'Deploy/K' needs 'Build/Nope', which is no stage or job of this pipeline"]
    assert "did you mean 'Build'?" in error.problems[0].hint
    assert (error.problems[0].position.line, error.problems[0].position.column) == (6, 5)  # the stage
    assert (error.problems[1].position.line, error.problems[1].position.column) == (8, 13)  # the job
    ambiguous = plan_error("""
        stages:
          - { name: A, jobs: [ { name: T, steps: [ { run: x } ] } ] }
          - { name: B, jobs: [ { name: T, steps: [ { run: x } ] } ] }
          - { name: C, jobs: [ { name: U, needs: [T], steps: [ { run: x } ] } ] }
        """)
    assert "several stages" in ambiguous.problems[0].message and "A/T, B/T" in ambiguous.problems[0].hint


def test_stage_needs_name_stages_only():
    error = plan_error("""
        stages:
          - { name: A, jobs: [ { name: J, steps: [ { run: x } ] } ] }
          - { name: B, needs: [J], jobs: [ { name: K, steps: [ { run: x } ] } ] }
        """)
    assert error.problems[0].message == "stage 'B' needs 'J', which is not a stage of this pipeline"
    assert "put `needs` on a job" in error.problems[0].hint


def test_stage_cycles_are_named():
    error = plan_error("""
        stages:
          - { name: Build, needs: [Deploy], jobs: [ { name: J, steps: [ { run: x } ] } ] }
          - { name: Deploy, jobs: [ { name: K, steps: [ { run: x } ] } ] }
        """)
    assert len(error.problems) == 1
    assert error.problems[0].message == "the stages' needs make a cycle: Build -> Deploy -> Build"
    assert "Build -> Deploy -> Build" in str(error)


def test_job_cycles_are_named_even_across_stages():
    error = plan_error("""
        stages:
          - name: A
            needs: []
            jobs: [ { name: a, needs: [B/b], steps: [ { run: x } ] } ]
          - name: B
            needs: []
            jobs: [ { name: b, needs: [C], steps: [ { run: x } ] } ]
          - name: C
            needs: []
            jobs: [ { name: c, needs: [A/a], steps: [ { run: x } ] } ]
        """)
    assert error.problems[0].message == "the jobs' needs make a cycle: A/a -> B/b -> C/c -> A/a"


def test_self_needs_are_refused():
    assert plan_error("""
        stages: [ { name: A, needs: [A], jobs: [ { name: J, steps: [ { run: x } ] } ] } ]
        """).problems[0].message == "stage 'A' needs itself"
    assert plan_error("""
        stages: [ { name: A, jobs: [ { name: J, needs: [A], steps: [ { run: x } ] } ] } ]
        """).problems[0].message == "job 'A/J' needs its own stage 'A'"
    assert plan_error("""
        stages: [ { name: A, jobs: [ { name: J, needs: [J], steps: [ { run: x } ] } ] } ]
        """).problems[0].message == "the jobs' needs make a cycle: A/J -> A/J"


def test_parallel_false_chains_jobs_and_combinations_in_order():
    plan = planner.plan(spec_of("""
        stages:
          - name: Pre
            jobs: [ { name: p, steps: [ { run: x } ] } ]
          - name: Seq
            parallel: false
            jobs:
              - { name: one, steps: [ { run: x } ] }
              - { name: two, matrix: { n: [1, 2] }, steps: [ { run: x } ] }
              - { name: three, steps: [ { run: x } ] }
        """), push())
    jobs = by_key(plan)
    assert keys(plan) == ["Pre/p", "Seq/one", "Seq/two [n=1]", "Seq/two [n=2]", "Seq/three"]
    assert jobs["Seq/one"].needs == ("Pre/p",)
    assert jobs["Seq/two [n=1]"].needs == ("Pre/p", "Seq/one")
    assert jobs["Seq/two [n=2]"].needs == ("Pre/p", "Seq/two [n=1]")
    assert jobs["Seq/three"].needs == ("Pre/p", "Seq/two [n=2]")


def test_a_later_job_in_a_sequential_stage_cannot_be_needed_by_an_earlier_one():
    error = plan_error("""
        stages:
          - name: S
            parallel: false
            jobs: [ { name: a, needs: [b], steps: [ { run: x } ] }, { name: b, steps: [ { run: x } ] } ]
        """)
    assert error.problems[0].message == "the jobs' needs make a cycle: S/a -> S/b -> S/a"


def test_matrix_expansion_names_keys_env_and_needs():
    plan = planner.plan(spec_of("""
        variables: { IMAGE: app, python: none, LEVEL: pipeline }
        stages:
          - name: Build
            jobs:
              - name: Test
                variables: { LEVEL: job }
                matrix: { python: ["3.11", "3.12"], os: [debian, alpine] }
                steps: [ { run: x } ]
          - name: Deploy
            jobs: [ { name: Release, needs: [Test], steps: [ { run: x } ] } ]
        """), push())
    assert keys(plan) == ["Build/Test [python=3.11, os=debian]", "Build/Test [python=3.11, os=alpine]",
                          "Build/Test [python=3.12, os=debian]", "Build/Test [python=3.12, os=alpine]",
                          "Deploy/Release"]
    first = plan.jobs[0]
    assert first.name == "Test [python=3.11, os=debian]"
    assert first.matrix == (("python", "3.11"), ("os", "debian"))
    assert first.env == (("IMAGE", "app"), ("python", "3.11"), ("LEVEL", "job"), ("os", "debian"))
    release = plan.jobs[-1]
    assert release.name == "Release" and release.env == (("IMAGE", "app"), ("python", "none"), ("LEVEL", "pipeline"))
    assert release.needs == tuple(keys(plan)[:4])


def test_job_fields_are_carried():
    plan = planner.plan(spec_of("""
        stages:
          - name: A
            jobs:
              - { name: J, timeout: 5m, retry: 2, allow_failure: true, environment: prod, executor: docker,
                  image: alpine, steps: [ { run: x }, { artifact: { path: d, name: n } } ] }
        """), push())
    job = plan.jobs[0]
    assert (job.timeout_seconds, job.retry, job.allow_failure, job.environment, job.executor) == (300, 2, True, "prod", "docker")
    assert [step.kind for step in job.steps] == ["run", "artifact"]


def test_when_conditions_skip_with_a_reason_and_dependents_still_run():
    spec = spec_of("""
        stages:
          - name: Build
            jobs: [ { name: b, steps: [ { run: x } ] } ]
          - name: Deploy
            when: { branch: main }
            jobs: [ { name: d, matrix: { n: [1, 2] }, steps: [ { run: x } ] } ]
          - name: Notify
            jobs:
              - { name: n, steps: [ { run: x } ] }
              - { name: only-manual, when: { event: manual }, steps: [ { run: x } ] }
              - { name: docs, when: { paths: ["docs/**"] }, steps: [ { run: x } ] }
              - { name: release, when: { branch: ["release/*", main] }, steps: [ { run: x } ] }
        """)
    plan = planner.plan(spec, push("feature/x", ["src/a.py"]))
    jobs = by_key(plan)
    assert jobs["Deploy/d [n=1]"].skip_reason == "when: branch main did not match feature/x"
    assert jobs["Deploy/d [n=2]"].skip_reason == "when: branch main did not match feature/x"
    assert jobs["Notify/n"].skip_reason == "" and jobs["Notify/n"].needs == ("Deploy/d [n=1]", "Deploy/d [n=2]")
    assert jobs["Notify/only-manual"].skip_reason == "when: event manual did not match push"
    assert jobs["Notify/docs"].skip_reason == "when: paths docs/** matched none of the changed paths"
    assert jobs["Notify/release"].skip_reason == "when: branch release/* or main did not match feature/x"
    on_main = by_key(planner.plan(spec, push("main", None)))
    assert all(not job.skip_reason for key, job in on_main.items() if key != "Notify/only-manual")
    tag = by_key(planner.plan(spec, Event("tag", "refs/tags/v1", "c")))
    assert tag["Deploy/d [n=1]"].skip_reason == "when: branch main did not match (no branch)"


def test_at_most_a_thousand_jobs():
    stages = "".join(f"  - name: S{s}\n    jobs:\n" + "".join(
        f"      - {{ name: J{j}, steps: [ {{ run: x }} ] }}\n" for j in range(100)) for s in range(10))
    plan = planner.plan(dsl.parse(HEAD + "stages:\n" + stages), push())
    assert len(plan.jobs) == 1000
    assert by_key(plan)["S1/J0"].needs == tuple(f"S0/J{j}" for j in range(100))
    values = "[" + ", ".join(str(i) for i in range(16)) + "]"
    error = plan_error(f"""
        stages:
          - name: A
            jobs:
              - {{ name: a, matrix: {{ x: {values}, y: {values} }}, steps: [ {{ run: x }} ] }}
              - {{ name: b, matrix: {{ x: {values}, y: {values} }}, steps: [ {{ run: x }} ] }}
              - {{ name: c, matrix: {{ x: {values}, y: {values} }}, steps: [ {{ run: x }} ] }}
              - {{ name: d, matrix: {{ x: {values}, y: {values} }}, steps: [ {{ run: x }} ] }}
        """)
    assert error.problems[0].message == "the pipeline makes 1,024 jobs (matrix combinations counted)"
    assert error.problems[0].hint == "expected at most 1,000 jobs in a run"


def test_order_is_stable_file_order_where_needs_allow():
    plan = planner.plan(spec_of("""
        stages:
          - name: A
            needs: []
            jobs:
              - { name: late, needs: [B/first], steps: [ { run: x } ] }
              - { name: early, steps: [ { run: x } ] }
          - name: B
            needs: []
            jobs: [ { name: first, steps: [ { run: x } ] } ]
        """), push())
    assert keys(plan) == ["A/early", "B/first", "A/late"]


# -- property: random graphs plan in a valid topological order, or name a real cycle -------

STEP = (Step(kind="run", name="x", run="x"),)


@st.composite
def random_specs(draw):
    stage_count = draw(st.integers(1, 5))
    sizes = [draw(st.integers(1, 4)) for _ in range(stage_count)]
    labels = [f"S{s}/J{j}" for s in range(stage_count) for j in range(sizes[s])]
    stages = []
    for s in range(stage_count):
        stage_needs = draw(st.one_of(st.none(), st.lists(st.sampled_from([f"S{o}" for o in range(stage_count) if o != s]
                                                                         or ["S0"]), unique=True, max_size=2)))
        if stage_needs is not None and stage_count == 1:
            stage_needs = []
        jobs = []
        for j in range(sizes[s]):
            own = [label for label in labels if not label.startswith(f"S{s}/") or draw(st.booleans())]
            needs = draw(st.lists(st.sampled_from(own or labels), unique=True, max_size=3))
            matrix = (("m", ("1", "2")),) if draw(st.integers(0, 4)) == 0 else ()
            jobs.append(JobSpec(name=f"J{j}", steps=STEP, needs=tuple(needs), matrix=matrix))
        stages.append(StageSpec(name=f"S{s}", jobs=tuple(jobs), needs=None if stage_needs is None else tuple(stage_needs),
                                parallel=draw(st.booleans())))
    return PipelineSpec(version="1.0", name="random", triggers=(), variables=(), stages=tuple(stages))


def direct_needs(spec: PipelineSpec) -> dict[str, set[str]]:
    """Independent of the planner: what each job (by Stage/Job) waits for directly."""
    out: dict[str, set[str]] = {}
    for s, stage in enumerate(spec.stages):
        stage_needs = ([f"S{s - 1}"] if s else []) if stage.needs is None else list(stage.needs)
        for j, job in enumerate(stage.jobs):
            waits = {f"{n}/{other.name}" for n in stage_needs for other in spec.stages[int(n[1:])].jobs}
            waits |= set(job.needs)
            if not stage.parallel and j:
                waits.add(f"{stage.name}/{stage.jobs[j - 1].name}")
            out[f"{stage.name}/{job.name}"] = waits
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_specs())
def test_random_dags_plan_in_topological_order_or_name_a_real_cycle(spec):
    waits = direct_needs(spec)
    try:
        plan = planner.plan(spec, push())
    except PipelineError as exc:
        message = exc.problems[0].message
        assert "cycle: " in message, message
        path = message.split("cycle: ", 1)[1].split(" -> ")
        assert path[0] == path[-1] and len(path) >= 2
        if message.startswith("the stages'"):
            stage_needs = {f"S{s}": ({f"S{s - 1}"} if s else set()) if st_.needs is None else set(st_.needs)
                           for s, st_ in enumerate(spec.stages)}
            assert all(b in stage_needs[a] for a, b in zip(path, path[1:])), path
        else:
            assert all(b in waits[a] for a, b in zip(path, path[1:])), path
        return
    position = {job.key: i for i, job in enumerate(plan.jobs)}
    assert len(position) == len(plan.jobs)  # keys are unique
    expected = sum(len(job.matrix[0][1]) if job.matrix else 1 for stage in spec.stages for job in stage.jobs)
    assert len(plan.jobs) == expected
    base = {job.key: job.key.split(" [")[0] for job in plan.jobs}
    jobs = {job.key: job for job in plan.jobs}
    for job in plan.jobs:
        for need in job.needs:
            assert position[need] < position[job.key], (need, job.key)
        # Every direct need of the job (each of its combinations) is waited for, possibly
        # through the previous job of a sequential stage.
        reached, frontier = set(), list(job.needs)
        while frontier:
            key = frontier.pop()
            if key not in reached:
                reached.add(key)
                frontier.extend(jobs[key].needs)
        assert waits[base[job.key]] <= {base[key] for key in reached}, job.key
