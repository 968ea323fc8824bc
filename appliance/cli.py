"""The ``prts`` command line: run the appliance and administer its data.

Every command reads the same configuration (see ``appliance.config``), so the admin
commands act on the data directory and backends that ``prts up`` uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys

import click

from appliance.config import ConfigError, load
from appliance.errors import NotFound, ValidationError
from appliance.logs import setup_logging
from appliance.pipelines import cli as pipeline_commands


class Fail(click.ClickException):
    """An error for the operator: printed as ``prts: error: ...`` with exit code 1."""

    def show(self, file=None) -> None:
        click.echo(f"prts: error: {self.format_message()}", err=True)


def _config(report_warnings: bool = True):
    try:
        config = load()
    except ConfigError as exc:
        click.echo(f"prts: configuration error: {exc}", err=True)
        sys.exit(2)
    setup_logging(config.log.level, config.log.format)
    if report_warnings:
        for warning in config.warnings:
            logging.getLogger("appliance.config").warning(warning)
    return config


def _appliance():
    from appliance.context import Appliance

    return Appliance(_config())


def _require_backends(app, *, include_analytics: bool = True) -> None:
    from appliance.health import check_backends

    down = [s for s in check_backends(app, include_analytics=include_analytics) if not s.ok]
    if down:
        for s in down:
            click.echo(f"prts: cannot reach the {s.name} backend at {s.address}: {s.error}", err=True)
        sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prts", prog_name="prts")
def main() -> None:
    """PRTS: a self-hosted DevOps appliance."""


# -- running -------------------------------------------------------------------------------


def _require_free_listen_address(listen: str) -> None:
    """Fail before starting anything when web.listen is taken, instead of a crash loop later."""
    import socket

    host, port = listen.rsplit(":", 1)
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            click.echo(f"prts: cannot listen on {listen} (web.listen): {exc.strerror}", err=True)
            sys.exit(1)


@main.command()
def up() -> None:
    """Run the whole appliance: migrate, seed on first start, serve and work until stopped."""
    from appliance.supervisor import Child, Supervisor, prts_command

    config = _config()
    _require_free_listen_address(config.web.listen)
    # Checks, migrations and seeding run in a child so the long-lived supervisor never
    # loads the database drivers or chdb (it would hold their memory for nothing).
    if subprocess.run(prts_command("_bootstrap")).returncode != 0:
        sys.exit(1)
    host, port = config.web.listen.rsplit(":", 1)
    url = f"http://{host.strip('[]') if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
    supervisor = Supervisor(
        [
            Child("web", prts_command("web", "--skip-checks"), signal.SIGTERM),
            Child("worker", prts_command("worker", "--skip-checks"), signal.SIGINT),
        ],
        ready_url=f"{url}/healthz",
    )
    sys.exit(supervisor.run(on_ready=lambda: click.echo(f"PRTS is ready at {url}/ (Ctrl-C stops it)", err=True)))


@main.command("_bootstrap", hidden=True)
def bootstrap_command() -> None:
    """Check every backend, migrate, and create the admin and demo project on first start."""
    from appliance import bootstrap

    app = _appliance()
    _require_backends(app)
    bootstrap.migrate_all(app)
    result = bootstrap.ensure_admin_and_demo(app)
    if result.admin_password:
        line = "-" * 64
        click.echo(
            f"{line}\n First start: created the administrator account\n"
            f"   username: {bootstrap.ADMIN_NAME}\n   password: {result.admin_password}\n"
            f" This one-time password is shown only now; you will choose a new one\n"
            f" when you first sign in.\n{line}"
        )
    if result.demo_project:
        click.echo(f"Seeded the demo project {result.demo_project}.")


@main.command()
def migrate() -> None:
    """Bring the database and analytics schemas up to date."""
    from appliance import bootstrap, migrate as migrations

    app = _appliance()
    _require_backends(app)
    bootstrap.migrate_all(app)
    click.echo(f"database at revision {migrations.current_revision(app.db)}")


def _metrics_dir(config) -> str:
    path = config.data_path / "run" / "prometheus"
    shutil.rmtree(path, ignore_errors=True)  # counters of a previous run must not be merged in
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


@main.command()
@click.option("--skip-checks", is_flag=True, hidden=True, help="Do not check the backends first (prts up did).")
def web(skip_checks: bool) -> None:
    """Serve the web app with gunicorn in the foreground."""
    config = _config()
    if not skip_checks:
        from appliance import migrate as migrations
        from appliance.context import Appliance

        app = Appliance(config)
        _require_backends(app, include_analytics=False)
        if not migrations.is_current(app.db):
            raise Fail("the database schema is not up to date: run `prts migrate` first")
        app.close()
        _require_free_listen_address(config.web.listen)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _metrics_dir(config)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:appliance.gunicorn_conf", "webapp:create_app()"]
    os.execv(sys.executable, argv)


@main.command()
@click.option("--skip-checks", is_flag=True, hidden=True)
def worker(skip_checks: bool) -> None:
    """Run the Huey consumer that executes background tasks."""
    app = _appliance()
    if not skip_checks:
        _require_backends(app, include_analytics=False)
    _ = app.tasks  # registers the tasks on the queue before the consumer starts
    consumer = app.huey.create_consumer(
        workers=app.config.queue.workers,
        worker_type="thread",
        periodic=True,
        # Huey backs off to 10 s between polls of an idle queue by default. On Redis the
        # consumer blocks on the list instead of polling, so the delay hardly matters; on
        # SQLite it is the latency of every job start, and a poll is one cheap SELECT, so
        # poll every 50 ms.
        initial_delay=0.05,
        backoff=1.0,
        max_delay=0.05 if app.config.queue.backend == "sqlite" else 1.0,
    )
    consumer.run()


# -- administration -------------------------------------------------------------------------


def _run_service(fn):
    """Run an admin action in a transaction; bad input becomes a clear error and stores nothing."""
    app = _appliance()
    _require_backends(app, include_analytics=False)
    try:
        with app.db.session() as s:
            return fn(s)
    except ValidationError as exc:
        raise Fail(f"{exc.field}: {exc.message}") from None
    except NotFound as exc:
        raise Fail(str(exc)) from None


def _read_password() -> str:
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    # Scripts pipe it in: the first line of standard input, without its line ending.
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise Fail("no password on standard input")
    return password


@main.group()
def user() -> None:
    """Manage local accounts."""


@user.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user a site administrator.")
@click.option("--email", default=None, help="The user's email address.")
def user_create(name: str, admin: bool, email: str | None) -> None:
    """Create a local account; the password is prompted for, or read from standard input."""
    from appliance.accounts import users

    password = _read_password()
    created = _run_service(lambda s: users.create_user(s, name, password, email=email, is_admin=admin).username)
    click.echo(f"created user {created}{' (administrator)' if admin else ''}")


@main.group()
def org() -> None:
    """Manage organisations."""


@org.command("create")
@click.argument("name")
@click.option("--description", default="", help="A line about the organisation.")
def org_create(name: str, description: str) -> None:
    from appliance.accounts import organisations

    created = _run_service(lambda s: organisations.create_organisation(s, name, description).name)
    click.echo(f"created organisation {created}")


@main.group()
def project() -> None:
    """Manage projects."""


@project.command("create")
@click.argument("path", metavar="ORG/NAME")
@click.option("--description", default="")
@click.option("--member", "members", multiple=True, metavar="USER:ROLE",
              help="Grant USER a role (viewer, developer, maintainer, admin); repeatable.")
def project_create(path: str, description: str, members: tuple[str, ...]) -> None:
    """Create a project in an existing organisation."""
    from appliance.accounts import organisations, users
    from appliance.models import Role

    grants = []
    for member in members:
        name, sep, role = member.partition(":")
        if not sep or not name:
            raise Fail(f"--member {member!r}: expected USER:ROLE")
        try:
            grants.append((name, Role.parse(role)))
        except ValueError as exc:
            raise Fail(f"--member {member!r}: {exc}") from None
    org_name, sep, name = path.partition("/")
    if not sep:
        raise Fail(f"{path!r}: expected ORG/NAME")

    def create(s):
        org = organisations.get_organisation(s, org_name)
        # Resolve every member before creating anything, so a typo stores nothing.
        resolved = [(users.get_user(s, u), role) for u, role in grants]
        created = organisations.create_project(s, org, name, description=description)
        for member_user, role in resolved:
            organisations.grant(s, member_user, created, role)
        return created.path

    created_path = _run_service(create)
    click.echo(f"created project {created_path}")


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
def config_check() -> None:
    """Print the effective configuration (secrets redacted) and where each value came from."""
    cfg = _config(report_warnings=False)
    width = max(len(k) for k in cfg.redacted())
    for key, value in cfg.redacted().items():
        click.echo(f"{key.ljust(width)} = {value!r:<40} # {cfg.sources.get(key, 'derived')}")
    for warning in cfg.warnings:
        click.echo(f"warning: {warning}", err=True)
    from appliance.accounts import external, ldap

    try:  # settings whose parts only make sense together: LDAP group mappings, SSO providers
        ldap.LdapSettings.from_config(cfg)
        external.sso_providers(cfg)
    except ConfigError as exc:
        click.echo(f"prts: configuration error: {exc}", err=True)
        sys.exit(2)
    click.echo("configuration OK", err=True)


@config.command("schema")
def config_schema() -> None:
    """Print every configuration key with its type, default and description as JSON."""
    import json

    from appliance.config import schema

    click.echo(json.dumps(schema(), indent=2))


main.add_command(pipeline_commands.pipeline)


# -- audit trail -----------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """Check and ship the audit trail."""


@audit.command("verify")
@click.option("--no-analytics", is_flag=True, help="Check only the main database, not the shipped copies.")
def audit_verify(no_analytics: bool) -> None:
    """Walk the hash chain; exit 1 naming the first changed, removed or reordered event."""
    from appliance.audit import chain
    from appliance.storage.analytics import AnalyticsError

    app = _appliance()
    _require_backends(app, include_analytics=not no_analytics)
    result = chain.verify_chain(app.db)
    if result.problem is not None:
        raise Fail(f"audit chain broken at {result.problem} ({result.verified} events verified before it)")
    line = f"{result.verified} events verified"
    if not no_analytics:
        try:
            shipped = chain.compare_shipped(app.db, app.analytics)
        except AnalyticsError as exc:
            raise Fail(f"{line}, but the shipped copies could not be read: {exc}") from None
        if shipped.problem is not None:
            raise Fail(f"{line}; shipped copy wrong at {shipped.problem}")
        line += f"; {shipped.compared} shipped copies match"
    click.echo(line)


@audit.command("ship")
def audit_ship() -> None:
    """Copy the audit events not yet shipped to the analytics store now."""
    from appliance.audit import shipping
    from appliance.storage.analytics import AnalyticsError

    app = _appliance()
    _require_backends(app)
    try:
        result = shipping.ship(app.db, app.analytics)
    except AnalyticsError as exc:
        raise Fail(f"shipping stopped, {shipping.unshipped_count(app.db)} events wait in the outbox: {exc}") from None
    if result.busy:
        raise Fail("another shipper is running; try again when it has finished")
    click.echo(f"shipped {result.shipped} events" + (f" ({result.skipped} were already there)" if result.skipped else ""))


# -- API tokens ------------------------------------------------------------------------------


class BadInput(Fail):
    """Bad input to a token command: exit code 2, like a usage error, so scripts can tell it
    from a backend failure (1)."""

    exit_code = 2


def _run_token_service(fn):
    try:
        return _run_service(fn)
    except Fail as exc:
        raise BadInput(exc.message) from None


@main.group()
def token() -> None:
    """Manage users' API tokens (for git over HTTP and the API)."""


@token.command("create")
@click.argument("username", metavar="USER")
@click.option("--scope", required=True, help="read, write or admin (admin: site administrators only).")
@click.option("--project", "project_path", default=None, metavar="ORG/NAME", help="Restrict the token to one project.")
@click.option("--expires", "expires_days", default=None, metavar="DAYS",
              help="Days until the token stops working (1 to 3650); without it the token never expires.")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def token_create(username: str, scope: str, project_path: str | None, expires_days: str | None, name: str) -> None:
    """Create a token for USER and print it, once, alone on standard output."""
    from appliance import audit
    from appliance.accounts import organisations, tokens, users

    days = None
    if expires_days is not None:
        try:
            days = int(expires_days)
        except ValueError:
            raise BadInput(f"--expires {expires_days!r}: expected a whole number of days") from None

    def create(s):
        owner = users.get_user(s, username)
        project = organisations.get_project(s, project_path) if project_path is not None else None
        row, text = tokens.create_token(s, owner, name, scope, project=project, expires_in_days=days)
        audit.record(s, "token.created", actor="cli", target=f"token {row.id}", project=project,
                     detail=f"{row.scope} token {row.prefix} for {owner.username}"
                            + (f" on {project.path}" if project else "") + ", via prts token create")
        return row.id, owner.username, text

    token_id, owner, text = _run_token_service(create)
    click.echo(text)
    limits = f" for {project_path}" if project_path else ""
    until = f", expires in {days} day{'s' if days != 1 else ''}" if days else ", never expires"
    click.echo(f"created token {token_id} ({scope}{limits}{until}) for {owner}; "
               "it is shown only now and cannot be read back", err=True)


def _minute(t) -> str:
    return t.strftime("%Y-%m-%dT%H:%MZ") if t else "-"


@token.command("list")
@click.argument("username", metavar="USER")
def token_list(username: str) -> None:
    """List USER's active tokens (never the tokens themselves)."""
    from appliance.accounts import tokens, users
    from appliance.models import Project

    def listing(s):
        owner = users.get_user(s, username)
        lines = []
        for row in tokens.user_tokens(s, owner):
            project = s.get(Project, row.project_id) if row.project_id else None
            lines.append("\t".join([str(row.id), row.prefix + "...", row.scope, project.path if project else "*",
                                    _minute(row.created_at), _minute(row.expires_at), _minute(row.last_used_at),
                                    # A name is one line of printable text in the table, whatever was stored.
                                    "".join(c if c.isprintable() else "?" for c in row.name)]))
        return lines

    lines = _run_token_service(listing)
    click.echo("\t".join(["ID", "TOKEN", "SCOPE", "PROJECT", "CREATED", "EXPIRES", "LAST_USED", "NAME"]))
    for line in lines:
        click.echo(line)


@token.command("revoke")
@click.argument("username", metavar="USER")
@click.argument("token_id", metavar="ID", type=click.IntRange(1, 2**63 - 1))
def token_revoke(username: str, token_id: int) -> None:
    """Revoke USER's token ID; it stops working at once."""
    from appliance import audit
    from appliance.accounts import tokens, users

    def revoke(s):
        owner = users.get_user(s, username)
        row = tokens.revoke(s, owner, token_id)
        audit.record(s, "token.revoked", actor="cli", target=f"token {row.id}",
                     detail=f"{row.scope} token {row.prefix} of {owner.username}, via prts token revoke")
        return row.name

    name = _run_token_service(revoke)
    click.echo(f"revoked token {token_id} ({name}) of {username}")
