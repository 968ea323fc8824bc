"""Parameter types and models shared by the API's areas: bounded ids and names, pages."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Generic, TypeVar

import pydantic
from flask import request, url_for

from appliance.accounts.tokens import MAX_ID

# Ids go into SQL: bounded by the INTEGER primary keys (see tokens.MAX_ID).
Id = Annotated[int, pydantic.Field(ge=1, le=MAX_ID)]
# Organisation, project, team and user names: the slugs of appliance/names.py, bounded here
# so that no parameter is unbounded; a name that is not a slug simply matches nothing.
Name = Annotated[str, pydantic.Field(min_length=1, max_length=100)]
Timestamp = dt.datetime

MAX_PAGE = 100_000
MAX_PER_PAGE = 100


class PageQuery(pydantic.BaseModel):
    page: int = pydantic.Field(1, ge=1, le=MAX_PAGE, description="1-based page number.")
    per_page: int = pydantic.Field(20, ge=1, le=MAX_PER_PAGE, description="Items per page.")

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


T = TypeVar("T")


class Page(pydantic.BaseModel, Generic[T]):
    """A page of a list; ``next`` is the URL of the following page, null on the last."""

    items: list[T]
    page: int
    per_page: int
    total: int
    next: str | None


def page_of(items: list, query: PageQuery, total: int) -> tuple[dict, dict[str, str]]:
    """The fields of a Page and its Link header (RFC 8288) for the current endpoint."""
    more = query.offset + len(items) < total
    links = {}
    next_url = None
    # The page's own filters carry over to the next; nothing else from the query string does.
    args = {**query.model_dump(exclude={"page", "per_page"}, exclude_none=True), **request.view_args}
    if more:
        next_url = url_for(request.endpoint, **args, page=query.page + 1, per_page=query.per_page, _external=True)
        links["next"] = next_url
    if query.page > 1:
        links["prev"] = url_for(request.endpoint, **args, page=query.page - 1, per_page=query.per_page,
                                _external=True)
    header = ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())
    fields = {"items": items, "page": query.page, "per_page": query.per_page, "total": total, "next": next_url}
    return fields, ({"Link": header} if header else {})
