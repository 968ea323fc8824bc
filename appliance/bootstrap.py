"""First-start work shared by ``prts up`` and ``prts migrate``: schema and seed data."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from appliance import migrate
from appliance.accounts import organisations, passwords, users
from appliance.context import Appliance
from appliance.models import Project, User
from appliance.storage.analytics import migrate_analytics

ADMIN_NAME = "admin"
DEMO_ORG = "demo"
DEMO_PROJECT = "hello-prts"


@dataclass
class BootstrapResult:
    admin_password: str | None = None  # set only when the admin was created now
    demo_project: str | None = None


def migrate_all(app: Appliance) -> None:
    migrate.upgrade(app.db)
    migrate_analytics(app.analytics)


def ensure_admin_and_demo(app: Appliance) -> BootstrapResult:
    """On a database without users: create the admin with a one-time password and a demo
    project. On every later start: nothing, so deleted demo data stays deleted."""
    result = BootstrapResult()
    with app.db.session() as s:
        if s.scalar(sa.select(sa.func.count(User.id))):
            return result
        result.admin_password = passwords.generate_password()
        admin = users.create_user(s, ADMIN_NAME, result.admin_password, is_admin=True, one_time=True)
        if not s.scalar(sa.select(sa.func.count(Project.id))):
            org = organisations.find_organisation(s, DEMO_ORG) or organisations.create_organisation(
                s, DEMO_ORG, "Examples to look around with"
            )
            project = organisations.create_project(
                s, org, DEMO_PROJECT, description="A demo project seeded on first start", creator=admin
            )
            result.demo_project = project.path
    return result
