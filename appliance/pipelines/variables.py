"""Project variables and secrets: every job of the project gets them as environment.

A secret is stored only encrypted (``SecretBox``) and is never shown again after saving;
its value (and its encoded forms) is masked in every job log by the native log engine,
which is why a secret must be long enough to mask and free of control characters a
terminal would not print. No error message here ever quotes a value.

The project's pipeline settings (job concurrency, cancelling superseded runs) are set here
too: like the variables, they are what a Maintainer decides for every run of the project.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from appliance.errors import NotFound, ValidationError
from appliance.logmask import MAX_SECRET_BYTES, MIN_SECRET_BYTES
from appliance.models import Project, ProjectVariable
from appliance.models.base import utcnow
from appliance.pipelines.secrets import SecretBox, place

NAME_MAX = 100
MAX_VALUE_BYTES = 64 * 1024
MAX_JOB_CONCURRENCY = 1000
RESERVED_PREFIX = "PRTS_"
# Set by the runner for every job (PRTS_* too); a project variable could never take effect.
RESERVED_NAMES = frozenset({"CI", "PRTS"})

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The log masker refuses secrets holding these (appliance.logmask): C0 controls other than
# tab and newline, DEL and the C1 controls. \r is refused too: it rewrites a terminal line.
_SECRET_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def check_name(name: str) -> str:
    """``name`` if it may name a project variable, else a ValidationError on ``name``."""
    if not isinstance(name, str) or not name:
        raise ValidationError("name", "is required")
    if len(name) > NAME_MAX:
        raise ValidationError("name", f"must be at most {NAME_MAX} characters")
    if not _NAME.fullmatch(name):
        raise ValidationError("name", "must start with a letter or _ and hold only letters, digits and _")
    if name.upper().startswith(RESERVED_PREFIX) or name.upper() in RESERVED_NAMES:
        raise ValidationError("name", f"may not be {name}: {RESERVED_PREFIX}* names, CI and PRTS are set by the "
                                      "appliance for every job")
    return name


def check_value(value: str, *, secret: bool) -> str:
    """``value`` if it may be the value of a variable (or of a secret, which must also be
    maskable in logs), else a ValidationError on ``value`` that does not quote it."""
    if not isinstance(value, str):
        raise ValidationError("value", "must be text")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("value", "must be valid text (it holds a lone surrogate)") from None
    limit = min(MAX_VALUE_BYTES, MAX_SECRET_BYTES) if secret else MAX_VALUE_BYTES
    if size > limit:
        raise ValidationError("value", f"is {size} bytes; at most {limit} are allowed")
    if "\x00" in value:
        raise ValidationError("value", "may not hold a NUL character (an environment variable cannot)")
    if secret:
        if size < MIN_SECRET_BYTES:
            raise ValidationError("value", f"must be at least {MIN_SECRET_BYTES} bytes for a secret: shorter "
                                           "values cannot be masked in logs reliably")
        if _SECRET_CONTROL.search(value):
            raise ValidationError("value", "may not hold control characters other than newline and tab in a secret")
    return value


def find_variable(session: orm.Session, project: Project, name: str) -> ProjectVariable | None:
    return session.scalars(sa.select(ProjectVariable).where(
        ProjectVariable.project_id == project.id, ProjectVariable.name == name)).first()


def set_variable(session: orm.Session, box: SecretBox, project: Project, name: str, value: str, *,
                 secret: bool | None = None) -> ProjectVariable:
    """Create or update the variable ``name``. ``secret=None`` keeps an existing variable's
    kind (a new one is plain); True or False sets it. A secret's value is stored only as
    its ciphertext."""
    check_name(name)
    row = find_variable(session, project, name)
    if secret is None:
        secret = row.is_secret if row is not None else False
    check_value(value, secret=bool(secret))
    if row is None:
        row = ProjectVariable(project_id=project.id, name=name)
        try:
            with session.begin_nested():
                _fill(row, box, project, name, value, bool(secret))
                session.add(row)
                session.flush()
            return row
        except IntegrityError:
            # Someone else created the same name meanwhile: update theirs instead.
            row = find_variable(session, project, name)
            if row is None:
                raise
    _fill(row, box, project, name, value, bool(secret))
    session.flush()
    return row


def _fill(row: ProjectVariable, box: SecretBox, project: Project, name: str, value: str, secret: bool) -> None:
    row.is_secret = secret
    row.value = "" if secret else value
    row.ciphertext = box.encrypt(value, place(project.id, name)) if secret else None
    row.updated_at = utcnow()


def delete_variable(session: orm.Session, project: Project, name: str) -> None:
    row = find_variable(session, project, name)
    if row is None:
        raise NotFound(f"no variable named {name!r} in this project")
    session.delete(row)
    session.flush()


def list_variables(session: orm.Session, project: Project) -> list[ProjectVariable]:
    return list(session.scalars(sa.select(ProjectVariable).where(ProjectVariable.project_id == project.id)
                                .order_by(ProjectVariable.name)))


def job_environment(session: orm.Session, box: SecretBox, project: Project) -> tuple[dict[str, str], list[str]]:
    """Every variable of the project as environment (secrets decrypted), and the secret
    values the job's log must mask (each once)."""
    env: dict[str, str] = {}
    masked: list[str] = []
    for row in list_variables(session, project):
        if row.is_secret:
            value = box.decrypt(row.ciphertext, place(project.id, row.name))
            env[row.name] = value
            if value not in masked:
                masked.append(value)
        else:
            env[row.name] = row.value
    return env, masked


def set_pipeline_settings(session: orm.Session, project: Project, *, job_concurrency: int,
                          cancel_superseded: bool) -> Project:
    """``job_concurrency``: jobs of the project running at once, 0 for the appliance's
    ``pipelines.job_concurrency``; ``cancel_superseded``: a new push run cancels the
    unfinished push runs of the same branch."""
    if isinstance(job_concurrency, bool) or not isinstance(job_concurrency, int):
        raise ValidationError("job_concurrency", "must be a whole number")
    if not 0 <= job_concurrency <= MAX_JOB_CONCURRENCY:
        raise ValidationError("job_concurrency", f"must be between 0 (the appliance default) and {MAX_JOB_CONCURRENCY}")
    project.job_concurrency = job_concurrency
    project.cancel_superseded = bool(cancel_superseded)
    session.flush()
    return project
