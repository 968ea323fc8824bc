"""Projects and their variables (names only)."""

from __future__ import annotations

import pydantic
from flask import current_app

from appliance.accounts import policy
from appliance.models import Project
from appliance.pipelines import variables
from webapp.api import access
from webapp.api.caller import load_user
from webapp.api.operations import Call, json_answer, operation
from webapp.api.schemas import Name, Page, PageQuery, Timestamp, page_of


class ProjectPath(pydantic.BaseModel):
    org: Name
    project: Name


class ProjectOut(pydantic.BaseModel):
    id: int
    path: str = pydantic.Field(description="ORG/NAME")
    organisation: str
    name: str
    description: str
    default_branch: str
    created_at: Timestamp


def project_out(project: Project) -> ProjectOut:
    return ProjectOut(id=project.id, path=project.path, organisation=project.organisation.name, name=project.name,
                      description=project.description or "", default_branch=project.default_branch,
                      created_at=project.created_at)


class VariableOut(pydantic.BaseModel):
    name: str
    secret: bool = pydantic.Field(description="A secret's value is never shown; a plain one's is not shown here.")
    created_at: Timestamp
    updated_at: Timestamp


class VariableList(pydantic.BaseModel):
    items: list[VariableOut]


def _db():
    return current_app.extensions["prts"].db


@operation("GET", "/projects", summary="The projects you may view", tag="projects", scope="read",
           query=PageQuery, answer=Page[ProjectOut])
def list_projects(call: Call):
    """By organisation, then name. A project-restricted token sees its project alone."""
    with _db().session() as s:
        user = load_user(s, call.caller)
        visible = [p for p in policy.visible_projects(s, user) if call.caller.reaches(p)]
        chosen = visible[call.query.offset:call.query.offset + call.query.per_page]
        fields, headers = page_of([project_out(p) for p in chosen], call.query, len(visible))
        return json_answer(Page[ProjectOut](**fields), headers=headers)


@operation("GET", "/projects/{org}/{project}", summary="One project", tag="projects", scope="read",
           path_params=ProjectPath, answer=ProjectOut)
def get_project(call: Call):
    with _db().session() as s:
        _, project = access.project(s, call.caller, call.path.org, call.path.project, "project.view")
        return project_out(project)


@operation("GET", "/projects/{org}/{project}/variables", summary="The project's variables, names only",
           tag="projects", scope="read", path_params=ProjectPath, answer=VariableList)
def list_variables(call: Call):
    """Names and whether each is secret; never a value. Needs the Developer role."""
    with _db().session() as s:
        _, project = access.project(s, call.caller, call.path.org, call.path.project, "variables.view")
        return VariableList(items=[VariableOut(name=v.name, secret=v.is_secret, created_at=v.created_at,
                                               updated_at=v.updated_at)
                                   for v in variables.list_variables(s, project)])
