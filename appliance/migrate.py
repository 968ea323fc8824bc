"""Run and inspect the main database's Alembic migrations."""

from __future__ import annotations

import pathlib

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from appliance.db import Database

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"


def _alembic_config(connection: sa.Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(db: Database, revision: str = "head") -> None:
    with db.engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)


def downgrade(db: Database, revision: str) -> None:
    with db.engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)


def revision(db: Database, message: str) -> None:
    """Autogenerate a new revision from the models (a developer tool)."""
    with db.engine.begin() as conn:
        command.revision(_alembic_config(conn), message=message, autogenerate=True)


def current_revision(db: Database) -> str | None:
    with db.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    with sa.create_engine("sqlite://").connect() as conn:
        return ScriptDirectory.from_config(_alembic_config(conn)).get_current_head()


def is_current(db: Database) -> bool:
    return current_revision(db) == head_revision()
