"""Webhooks from outside forges (GitHub, GitLab, Gitea, Forgejo) for a mirrored project.

A delivery is only a signal that the outside repository changed: the commits are taken
from a fetch of the project's mirror URL, never from the body, so a forged or stale body
can at worst cause a fetch. Still, nothing is stored and nothing is fetched until the
delivery proves it knows the project's inbound secret:

- GitHub signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``;
- Gitea and Forgejo sign it too: ``X-Gitea-Signature`` / ``X-Forgejo-Signature: <hex>``;
- GitLab sends the secret itself: ``X-Gitlab-Token: <secret>``.

Every comparison is constant-time. A verified delivery is recorded under its delivery id
(unique per project and forge) before anything else happens, so a replayed delivery is
answered and otherwise ignored: each delivery runs at most once.

This module knows nothing of HTTP servers: ``webapp/hooks.py`` calls it with the headers
and the raw bytes, and turns ``DeliveryRefused`` into a response.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from appliance import repos
from appliance.accounts import organisations
from appliance.config import Config
from appliance.errors import NotFound, ValidationError
from appliance.hosting import mirror, pushes
from appliance.models import InboundDelivery, Project
from appliance.pipelines.secrets import SecretBox, SecretCorruptError, SecretKeyError

log = logging.getLogger(__name__)

FORGES = ("github", "gitlab", "gitea")
SECRET_BYTES = 32
# The column is 100 characters; forges send a UUID (36) or a GitLab idempotency key.
MAX_DELIVERY_ID = 100
_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_HEX_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
# Deliveries are listed newest first; the settings page shows this many.
RECENT_DELIVERIES = 50


class DeliveryRefused(Exception):
    """A delivery that is answered with ``status`` and ``message`` and otherwise ignored."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class Headers:
    """The header names one forge uses. Forgejo sends Gitea-compatible hooks under both
    its own names and Gitea's; either is accepted, its own first."""

    event: tuple[str, ...]
    delivery: tuple[str, ...]
    signature: tuple[str, ...]


HEADERS = {
    "github": Headers(event=("X-GitHub-Event",), delivery=("X-GitHub-Delivery",),
                      signature=("X-Hub-Signature-256",)),
    "gitlab": Headers(event=("X-Gitlab-Event",), delivery=("X-Gitlab-Event-UUID", "Idempotency-Key"),
                      signature=("X-Gitlab-Token",)),
    "gitea": Headers(event=("X-Forgejo-Event", "X-Gitea-Event"), delivery=("X-Forgejo-Delivery", "X-Gitea-Delivery"),
                     signature=("X-Forgejo-Signature", "X-Gitea-Signature")),
}


@dataclasses.dataclass(frozen=True)
class Signal:
    """What a delivery asks for. ``kind``: ``ping`` (answer, nothing else), ``fetch`` (fetch
    the mirror) or ``ignored`` (an event this appliance has no use for)."""

    kind: str
    event: str
    ref: str = ""
    detail: str = ""


# -- the secret ---------------------------------------------------------------------------


def secret_place(project_id: int) -> str:
    """The associated data binding the inbound secret's ciphertext to its project."""
    return f"project:{int(project_id)}:inbound-webhook"


def generate_secret(session: orm.Session, project: Project, config: Config) -> str:
    """Give ``project`` a new inbound secret (replacing any old one) and return it: the
    only time it is seen in plain text."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    project.inbound_secret_ciphertext = SecretBox.from_config(config).encrypt(secret, secret_place(project.id))
    session.flush()
    return secret


def remove_secret(session: orm.Session, project: Project) -> None:
    """Stop accepting deliveries for ``project`` (its hook URLs answer 404 again)."""
    project.inbound_secret_ciphertext = None
    session.flush()


def read_secret(config: Config, project: Project) -> str | None:
    """The project's inbound secret, or None when it has none. Raises ``SecretKeyError`` /
    ``SecretCorruptError`` when the stored ciphertext cannot be read."""
    if project.inbound_secret_ciphertext is None:
        return None
    return SecretBox.from_config(config).decrypt(project.inbound_secret_ciphertext, secret_place(project.id))


# -- headers and signatures ---------------------------------------------------------------


def _header(headers: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str | None]:
    """(name, value) of the first of ``names`` present; (first name, None) when none is."""
    for name in names:
        value = headers.get(name)
        if value is not None:
            return name, value
    return names[0], None


def _bytes(text: str) -> bytes:
    # WSGI servers hand headers over as latin-1 text; this keeps every byte as it came.
    return text.encode("latin-1", errors="replace")


def expected_signature(forge: str, secret: str, body: bytes) -> str:
    """The signature header value ``forge`` sends with ``body`` when it knows ``secret``."""
    if forge == "gitlab":
        return secret
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}" if forge == "github" else digest


def verify_signature(forge: str, headers: Mapping[str, str], body: bytes, secret: str) -> None:
    """Raise ``DeliveryRefused(401)`` unless the delivery's signature header proves it was
    made with ``secret`` over exactly ``body`` (the raw bytes, before any parsing)."""
    names = HEADERS[forge].signature
    name, given = _header(headers, names)
    if not given:
        raise DeliveryRefused(401, f"the {' or '.join(names)} header is missing: set the webhook's secret to "
                                   "the one shown on the project's mirroring settings")
    expected = expected_signature(forge, secret, body)
    # Hex digests compare case-insensitively; GitLab's token is compared exactly.
    given_bytes = _bytes(given.strip() if forge == "gitlab" else given.strip().lower())
    if not hmac.compare_digest(given_bytes, _bytes(expected)):
        raise DeliveryRefused(401, f"the {name} header does not match the project's inbound secret")


def event_of(forge: str, headers: Mapping[str, str]) -> str:
    names = HEADERS[forge].event
    name, value = _header(headers, names)
    if not value or not value.strip():
        raise DeliveryRefused(400, f"the {' or '.join(names)} header is missing; it names the event delivered")
    value = value.strip()
    if len(value) > 50 or not value.isprintable():
        raise DeliveryRefused(400, f"the {name} header is not an event name (at most 50 printable characters)")
    return value


def delivery_id_of(forge: str, headers: Mapping[str, str]) -> str:
    names = HEADERS[forge].delivery
    name, value = _header(headers, names)
    if not value or not value.strip():
        raise DeliveryRefused(400, f"the {' or '.join(names)} header is missing; it identifies the delivery "
                                   "so that a replayed delivery is not acted on twice")
    value = value.strip()
    if len(value) > MAX_DELIVERY_ID or not _PRINTABLE.fullmatch(value):
        raise DeliveryRefused(400, f"the {name} header must be 1 to {MAX_DELIVERY_ID} printable characters "
                                   "without spaces")
    return value


# -- the body -----------------------------------------------------------------------------


def _json_object(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DeliveryRefused(400, f"the body is not JSON ({exc.__class__.__name__}); set the webhook's "
                                   "content type to application/json") from None
    if not isinstance(data, dict):
        raise DeliveryRefused(400, f"the body must be a JSON object, not {_json_type(data)}")
    return data


def _json_type(value) -> str:
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null"


def _field(data: dict, name: str, kind: type, *, required: bool, nullable: bool = False):
    """``data[name]`` when it is a ``kind``; refusals name the field and what it was."""
    if name not in data:
        if required:
            raise DeliveryRefused(400, f"the field {name!r} is missing")
        return None
    value = data[name]
    if value is None and nullable:
        return None
    # bool is an int in Python; a JSON true is never a number here.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        expected = {str: "a string", dict: "an object", list: "a list", bool: "a boolean"}[kind]
        raise DeliveryRefused(400, f"the field {name!r} must be {expected}, not {_json_type(value)}")
    return value


def _ref(data: dict, name: str = "ref") -> str:
    ref = _field(data, name, str, required=True)
    if not ref or len(ref) > 255 or not ref.isprintable():
        raise DeliveryRefused(400, f"the field {name!r} must be a ref name of 1 to 255 printable characters")
    return ref


def _sha(data: dict, name: str, *, required: bool) -> str:
    sha = _field(data, name, str, required=required)
    if sha is None:
        return ""
    if not _HEX_SHA.fullmatch(sha):
        raise DeliveryRefused(400, f"the field {name!r} must be a commit id (40 or 64 lowercase hex digits)")
    return sha


def _check_common(data: dict) -> None:
    # The nested parts every forge sends; not used, but a body whose shape is wrong is not
    # one of theirs, and saying so beats guessing.
    _field(data, "repository", dict, required=False, nullable=True)
    _field(data, "project", dict, required=False, nullable=True)
    _field(data, "commits", list, required=False, nullable=True)
    _field(data, "head_commit", dict, required=False, nullable=True)
    _field(data, "sender", dict, required=False, nullable=True)


def _push(event: str, data: dict) -> Signal:
    ref = _ref(data)
    after = _sha(data, "after", required=True)
    _sha(data, "before", required=False)
    _check_common(data)
    deleted = after and not after.strip("0")
    detail = f"{ref} {'deleted' if deleted else 'now at ' + after[:12]}"
    return Signal("fetch", event, ref=ref, detail=detail)


def _gitea_create(event: str, data: dict) -> Signal:
    ref = _ref(data)
    ref_type = _field(data, "ref_type", str, required=True)
    if ref_type not in ("branch", "tag"):
        raise DeliveryRefused(400, "the field 'ref_type' must be \"branch\" or \"tag\"")
    sha = _sha(data, "sha", required=False)
    _check_common(data)
    full = ref if ref.startswith("refs/") else f"refs/{'heads' if ref_type == 'branch' else 'tags'}/{ref}"
    return Signal("fetch", event, ref=full, detail=f"{full} created" + (f" at {sha[:12]}" if sha else ""))


def parse_signal(forge: str, event: str, body: bytes) -> Signal:
    """What the verified delivery asks for. Raises ``DeliveryRefused(400)`` naming the field
    when the body is not JSON of the shape the event has."""
    data = _json_object(body)
    if forge == "github":
        if event == "ping":
            _field(data, "zen", str, required=False)
            _field(data, "hook", dict, required=False, nullable=True)
            return Signal("ping", event, detail="ping")
        if event == "push":
            return _push(event, data)
    elif forge == "gitlab":
        if event in ("Push Hook", "Tag Push Hook"):
            return _push(event, data)
        if event == "System Hook":
            kind = _field(data, "event_name", str, required=True)
            if kind in ("push", "tag_push"):
                return _push(event, data)
            return Signal("ignored", event, detail=f"system hook event {kind[:50]!r} is not used")
    elif forge == "gitea":
        if event == "push":
            return _push(event, data)
        if event == "create":
            return _gitea_create(event, data)
    return Signal("ignored", event, detail=f"the {event!r} event is not used; only pushes are")


# -- delivery rows --------------------------------------------------------------------------


def record_delivery(app, project_id: int, forge: str, delivery_id: str, event: str) -> int | None:
    """Insert the delivery's row; its id, or None when this delivery id was seen before
    (a replay). The unique key decides, so two copies arriving at once cannot both win."""
    try:
        with app.db.session() as s:
            row = InboundDelivery(project_id=project_id, forge=forge, delivery_id=delivery_id, event=event[:50],
                                  outcome="received", detail="")
            s.add(row)
            s.flush()
            return row.id
    except sa_exc.IntegrityError:
        return None


def set_outcome(app, row_id: int, outcome: str, detail: str) -> None:
    with app.db.session() as s:
        s.execute(sa.update(InboundDelivery).where(InboundDelivery.id == row_id)
                  .values(outcome=outcome[:20], detail=detail[:2000]))


def recent_deliveries(session: orm.Session, project_id: int, limit: int = RECENT_DELIVERIES) -> list[InboundDelivery]:
    return list(session.scalars(sa.select(InboundDelivery).where(InboundDelivery.project_id == project_id)
                                .order_by(InboundDelivery.received_at.desc(), InboundDelivery.id.desc())
                                .limit(limit)))


# -- a delivery from start to end ---------------------------------------------------------

# One answer for an unknown forge, an unknown project and a project that takes no
# deliveries: none of them may tell a caller which projects exist.
NOT_FOUND = "no webhook endpoint here"
MANUAL = "manual"  # the forge column of the rows "Fetch now" makes


def receive(app, forge: str, project_path: str, headers: Mapping[str, str], content_length: int | None,
            read_body: Callable[[int], bytes]) -> tuple[int, str]:
    """Handle one delivery; ``(status, message)`` to answer with. ``read_body(limit)``
    returns at most ``limit`` bytes of the body and is called only once the project, its
    secret and the declared size have been checked. Refusals raise ``DeliveryRefused``."""
    if forge not in FORGES:
        raise DeliveryRefused(404, NOT_FOUND)
    with app.db.session() as s:
        try:
            project = organisations.get_project(s, project_path)
        except (NotFound, ValidationError):
            raise DeliveryRefused(404, NOT_FOUND) from None
        if project.inbound_secret_ciphertext is None:
            raise DeliveryRefused(404, NOT_FOUND)
        project_id, mirror_url = project.id, project.mirror_url
        try:
            secret = read_secret(app.config, project)
        except (SecretKeyError, SecretCorruptError) as exc:
            log.error("cannot verify inbound webhooks of %s: %s", project_path, exc)
            raise DeliveryRefused(503, "the appliance cannot read this project's webhook secret; "
                                       "an administrator finds the reason in its log") from None

    cap = app.config.webhooks.max_body_bytes
    if content_length is not None and content_length > cap:
        raise DeliveryRefused(413, f"the body is larger than {cap} bytes (webhooks.max_body_bytes)")
    body = read_body(cap + 1)
    if len(body) > cap:
        raise DeliveryRefused(413, f"the body is larger than {cap} bytes (webhooks.max_body_bytes)")

    verify_signature(forge, headers, body, secret)
    event = event_of(forge, headers)
    delivery_id = delivery_id_of(forge, headers)
    row_id = record_delivery(app, project_id, forge, delivery_id, event)
    if row_id is None:
        return 200, f"delivery {delivery_id} was already received; nothing more is done"

    try:
        signal = parse_signal(forge, event, body)
    except DeliveryRefused as exc:
        set_outcome(app, row_id, "rejected", exc.message)
        raise
    if signal.kind == "ping":
        set_outcome(app, row_id, "ping", "ping answered")
        return 200, "pong"
    if signal.kind == "ignored":
        set_outcome(app, row_id, "ignored", signal.detail)
        return 200, f"received; {signal.detail}"
    if not mirror_url:
        message = "the project has no mirror URL to fetch; set one in its mirroring settings"
        set_outcome(app, row_id, "refused", f"{signal.detail}: {message}")
        raise DeliveryRefused(409, message)
    set_outcome(app, row_id, "queued", signal.detail)
    try:
        app.tasks.fetch_mirror(project_id, row_id)
    except Exception as exc:  # any queue backend error (Redis down, SQLite locked)
        log.error("could not queue the mirror fetch of %s", project_path, exc_info=True)
        set_outcome(app, row_id, "failed", f"{signal.detail}: the fetch could not be queued "
                                           f"({exc.__class__.__name__})")
        raise DeliveryRefused(503, "the fetch could not be queued; redeliver later") from None
    return 202, "accepted; the mirror will be fetched"


def queue_manual_fetch(app, project_id: int, username: str) -> int:
    """Record a "Fetch now" as a delivery row and queue its fetch; the row's id."""
    row_id = record_delivery(app, project_id, MANUAL, f"{MANUAL}-{secrets.token_hex(8)}", "fetch now")
    set_outcome(app, row_id, "queued", f"requested by {username}")
    app.tasks.fetch_mirror(project_id, row_id)
    return row_id


def run_fetch(app, project_id: int, row_id: int) -> list:
    """The queued work of a delivery: fetch the mirror, start the pipelines its moved refs
    call for, and record how it went on the delivery's row. Returns the runs started."""
    try:
        updates = mirror.fetch(app, project_id)
    except (mirror.MirrorError, repos.RepositoryError) as exc:
        set_outcome(app, row_id, "failed", str(exc))
        return []
    started = pushes.process_push(app, project_id, updates, None)
    moved = ", ".join(f"{u.ref} {'deleted' if u.deleted else u.new[:12]}" for u in updates[:20])
    more = f" and {len(updates) - 20} more" if len(updates) > 20 else ""
    detail = (f"{len(updates)} ref(s) updated: {moved}{more}" if updates else "already up to date") \
        + f"; {len(started)} pipeline(s) started"
    set_outcome(app, row_id, "fetched", detail)
    return started
