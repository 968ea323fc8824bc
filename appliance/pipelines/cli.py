"""``prts pipeline``: pipeline files from the command line (no backend needed).

``prts pipeline validate FILE`` reads a pipeline file (``-`` for standard input), checks
it as the appliance would and plans it for a manual run on ``main``, so that needs
cycles and job limits are caught too. Problems are printed as ``file:line:column:
message`` on standard error, the shape editors and CI logs turn into links.
"""

from __future__ import annotations

import sys

import click

from appliance.pipelines.spec import Event, PipelineError, PipelineSpec, Plan

# The event a pipeline is planned for when nothing happened yet: a person starting it on main.
SAMPLE_EVENT = Event(kind="manual", ref="refs/heads/main", commit="0" * 40)
MAX_BYTES = 1024 * 1024  # dsl.MAX_BYTES, without importing the parser for every `prts` command


def check(source: str | bytes, file: str) -> tuple[PipelineSpec, Plan]:
    """Parse and plan ``source``; raises ``PipelineError`` with every problem found."""
    # Imported here: `prts` registers this group at start, and the parser's imports
    # (PyYAML, jsonschema) would slow every other command down.
    from appliance.pipelines import dsl, planner

    spec = dsl.parse(source, file)
    return spec, planner.plan(spec, SAMPLE_EVENT)


def summary(spec: PipelineSpec, plan: Plan) -> str:
    jobs, stages = len(plan.jobs), len(spec.stages)
    return f"{jobs} job{'s' if jobs != 1 else ''} in {stages} stage{'s' if stages != 1 else ''}"


@click.group()
def pipeline() -> None:
    """Work with pipeline files (.prts/pipeline.yaml)."""


@pipeline.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
def validate(file: str) -> None:
    """Check a pipeline file; `-` reads it from standard input."""
    name = "<stdin>" if file == "-" else file
    try:
        if file == "-":
            source = sys.stdin.buffer.read(MAX_BYTES + 1)
        else:
            with open(file, "rb") as fh:
                source = fh.read(MAX_BYTES + 1)  # more is refused by size, unread
    except OSError as exc:
        click.echo(f"{name}: cannot read: {exc.strerror or exc}", err=True)
        sys.exit(1)
    try:
        spec, plan = check(source, name)
    except PipelineError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        sys.exit(1)
    click.echo(f"{name}: valid ({summary(spec, plan)})")


@pipeline.command("run")
@click.argument("project")
@click.option("--ref", default=None, help="Branch, tag or commit; the project's default branch when omitted.")
@click.option("--wait/--no-wait", default=False, help="Wait for the run to finish; exit 1 unless it succeeds.")
def run(project: str, ref: str | None, wait: bool) -> None:
    """Start a run of PROJECT's pipeline (ORG/NAME), as the Run pipeline button does."""
    import time

    from appliance import audit
    from appliance.accounts import organisations
    from appliance.cli import Fail, _appliance, _require_backends
    from appliance.errors import NotFound, ValidationError
    from appliance.models import PipelineRun
    from appliance.pipelines import runs

    app = _appliance()
    _require_backends(app, include_analytics=False)
    try:
        with app.db.session() as s:
            target = organisations.get_project(s, project)
            _ = target.organisation
        started = runs.start_manual(app, target, ref or target.default_branch, None, audit.Origin("cli"))
    except (NotFound, ValidationError) as exc:
        raise Fail(str(exc)) from None
    click.echo(f"{target.path}: run #{started.number} started ({started.status}) for {started.ref} "
               f"at {started.commit_sha[:12]}")
    while wait:
        with app.db.session() as s:
            current = s.get(PipelineRun, started.id)
            if current.finished_at is not None:
                click.echo(f"run #{current.number} {current.status}" + (f": {current.error}" if current.error else ""))
                sys.exit(0 if current.status == "success" else 1)
        time.sleep(0.5)


@pipeline.command("reconcile")
def reconcile() -> None:
    """Requeue or fail jobs whose worker vanished, now (the worker does it every minute)."""
    from appliance.cli import _appliance
    from appliance.pipelines import runner

    transition = runner.reconcile(_appliance())
    click.echo(f"{len(transition.enqueue)} jobs announced again, {len(transition.changed_jobs)} jobs changed")
