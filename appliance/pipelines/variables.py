"""Project variables and secrets: every job of the project gets them as environment.

A secret is stored only encrypted (``SecretBox``) and is never shown again after saving;
its value (and its encoded forms) is masked in every job log by the native log engine.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy import orm

from appliance.errors import NotFound, ValidationError
from appliance.logmask import MIN_SECRET_BYTES
from appliance.models import Project, ProjectVariable
from appliance.models.base import utcnow
from appliance.pipelines.secrets import SecretBox, place

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
_SECRET_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_VALUE_BYTES = 64 * 1024


def check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError("name", "must be a letter or _ followed by letters, digits or _ (at most 100)")
    if name.upper().startswith("PRTS_") or name == "CI":
        raise ValidationError("name", f"{name} is reserved for the variables the appliance sets")
    return name


def _check_value(value: str, secret: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError("value", "must be text")
    size = len(value.encode("utf-8"))
    if size > MAX_VALUE_BYTES:
        raise ValidationError("value", f"is {size} bytes; at most {MAX_VALUE_BYTES} are allowed")
    if secret:
        if size < MIN_SECRET_BYTES:
            raise ValidationError("value", f"a secret must be at least {MIN_SECRET_BYTES} bytes: shorter values "
                                           "cannot be masked in logs reliably")
        if _SECRET_CONTROL.search(value):
            raise ValidationError("value", "a secret may not hold control characters other than newline and tab")
    return value


def set_variable(session: orm.Session, box: SecretBox, project: Project, name: str, value: str, *,
                 secret: bool) -> ProjectVariable:
    check_name(name)
    _check_value(value, secret)
    row = session.scalars(sa.select(ProjectVariable).where(
        ProjectVariable.project_id == project.id, ProjectVariable.name == name)).first()
    if row is None:
        row = ProjectVariable(project_id=project.id, name=name)
        session.add(row)
    row.is_secret = secret
    row.value = "" if secret else value
    row.ciphertext = box.encrypt(value, place(project.id, name)) if secret else None
    row.updated_at = utcnow()
    session.flush()
    return row


def delete_variable(session: orm.Session, project: Project, name: str) -> None:
    row = session.scalars(sa.select(ProjectVariable).where(
        ProjectVariable.project_id == project.id, ProjectVariable.name == name)).first()
    if row is None:
        raise NotFound(f"variable {name}")
    session.delete(row)
    session.flush()


def list_variables(session: orm.Session, project: Project) -> list[ProjectVariable]:
    return list(session.scalars(sa.select(ProjectVariable).where(ProjectVariable.project_id == project.id)
                                .order_by(ProjectVariable.name)))


def job_environment(session: orm.Session, box: SecretBox, project: Project) -> tuple[dict[str, str], list[str]]:
    """Every variable of the project as environment (secrets decrypted), and the secret
    values the job's log must mask."""
    env: dict[str, str] = {}
    masked: list[str] = []
    for row in list_variables(session, project):
        if row.is_secret:
            value = box.decrypt(row.ciphertext, place(project.id, row.name))
            env[row.name] = value
            masked.append(value)
        else:
            env[row.name] = row.value
    return env, masked
