"""Outbound webhooks: the appliance POSTs signed JSON to a URL a Maintainer gave when a
pipeline run finishes (and, from a later issue, when a deployment does).

A webhook is a URL, the events it wants and a signing secret. The secret is random,
stored encrypted (``SecretBox``, bound to its row) and shown once, when it is made. Every
delivery is signed the way GitHub signs its own: ``X-PRTS-Signature-256: sha256=<hex
HMAC-SHA256 of the exact body bytes>``; the body is stored as the bytes that are sent, so
a retry is signed identically and carries the same ``X-PRTS-Delivery`` id.

The database owns the state of a delivery (``pending -> delivered | failed``). The queue
only carries "delivery N may be due" hints, which may be lost or duplicated, so an attempt
is claimed with a conditional UPDATE (status pending, the attempt count seen, due now) and
the claim pushes ``next_attempt_at`` out by a lease: two workers never send the same
attempt, and an attempt whose worker died is picked up again when the lease runs out by
the periodic ``deliver_due``. A failed attempt is retried after 1, 2, 4, ... minutes until
``webhooks.max_attempts``. No transaction is held open while a receiver is being waited for.

Every attempt goes through the SSRF guard (``netguard``) again: the URL's host is resolved
and vetted, the connection goes to the vetted address (never a second lookup), redirects
are followed by hand (at most ``MAX_REDIRECTS``), each new URL vetted again. A refused
address ends the delivery at once (retrying cannot change the allow-list); an address
that does not resolve is retried like any other failure.

Secrets never reach a log or an error message; errors name the URL and what went wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Iterable

import sqlalchemy as sa
import urllib3
from sqlalchemy import exc as sa_exc
from sqlalchemy import orm

from appliance.config import Config
from appliance.errors import ValidationError
from appliance.hosting import netguard
from appliance.models import PipelineRun, Project
from appliance.models.base import utcnow
from appliance.models.webhook import WEBHOOK_EVENTS, Webhook, WebhookDelivery
from appliance.pipelines.secrets import SecretBox, SecretCorruptError, SecretKeyError

log = logging.getLogger(__name__)

SECRET_BYTES = 32
MAX_URL = 2000
USER_AGENT = "PRTS-Hookshot"
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
RESPONSE_CAP = 64 * 1024  # bytes of a response read; the rest is left unread
EXCERPT_CHARS = 2000  # of those, kept on the delivery for the log
RECENT_DELIVERIES = 50
DUE_BATCH = 100
# A run's statuses that end it and are announced ("skipped" runs did nothing to announce).
FINAL_RUN_STATUSES = ("success", "failed", "canceled")
EVENT_LABELS = {"run": "Pipeline run finished", "deployment": "Deployment finished"}
# Deterministic delivery ids for one final transition of a run (see ``run_finished``).
_DELIVERY_NAMESPACE = uuid.UUID("6f1d3f5e-4c1b-4b8e-9a51-0e3c2b7d9a10")


# -- webhooks -----------------------------------------------------------------------------


def secret_place(project_id: int, webhook_id: int) -> str:
    """The associated data binding a webhook secret's ciphertext to its row."""
    return f"project:{int(project_id)}:webhook:{int(webhook_id)}"


def check_events(events: Iterable[str]) -> str:
    """The stored form (comma-separated, in ``WEBHOOK_EVENTS`` order) of a subset of events."""
    chosen = {e.strip() for e in events if e and e.strip()}
    unknown = sorted(chosen - set(WEBHOOK_EVENTS))
    if unknown:
        raise ValidationError("events", f"unknown event {unknown[0]!r} (expected some of {', '.join(WEBHOOK_EVENTS)})")
    if not chosen:
        raise ValidationError("events", "choose at least one event")
    return ",".join(e for e in WEBHOOK_EVENTS if e in chosen)


def events_of(webhook: Webhook) -> list[str]:
    return [e for e in (webhook.events or "").split(",") if e]


def check_webhook_url(url: str, config: Config) -> str:
    """The URL (stripped) if the appliance may POST to it; ``ValidationError("url", ...)``
    saying why not. Checked again at every attempt: DNS answers change."""
    url = (url or "").strip()
    if not url:
        raise ValidationError("url", "is required")
    if len(url) > MAX_URL:
        raise ValidationError("url", f"must be at most {MAX_URL} characters")
    try:
        netguard.check_url(url, netguard.Allowlist.from_config(config))
    except ValueError as exc:  # BlockedAddress included
        raise ValidationError("url", str(exc)) from None
    if urllib.parse.urlsplit(url).fragment:
        raise ValidationError("url", "must not carry a #fragment (it is never sent)")
    return url


def _new_secret(config: Config, webhook: Webhook) -> str:
    secret = secrets.token_hex(SECRET_BYTES)
    webhook.secret_ciphertext = SecretBox.from_config(config).encrypt(secret, secret_place(webhook.project_id, webhook.id))
    return secret


def create_webhook(session: orm.Session, project: Project, url: str, events: Iterable[str],
                   config: Config) -> tuple[Webhook, str]:
    """Add a webhook to ``project``; returns it and its secret (the only time the secret is
    seen in plain text). ``ValidationError`` names the field that was refused."""
    url = check_webhook_url(url, config)
    stored_events = check_events(events)
    # The ciphertext is bound to the row id, so the row is made first with a placeholder.
    webhook = Webhook(project_id=project.id, url=url, events=stored_events, active=True, secret_ciphertext=b"")
    session.add(webhook)
    session.flush()
    secret = _new_secret(config, webhook)
    session.flush()
    return webhook, secret


def update_webhook(session: orm.Session, webhook: Webhook, *, events: Iterable[str], active: bool) -> None:
    webhook.events = check_events(events)
    webhook.active = bool(active)
    session.flush()


def regenerate_secret(session: orm.Session, webhook: Webhook, config: Config) -> str:
    """Replace the webhook's secret and return the new one (shown once)."""
    secret = _new_secret(config, webhook)
    session.flush()
    return secret


def delete_webhook(session: orm.Session, webhook: Webhook) -> None:
    """Remove the webhook and its delivery log."""
    session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    session.delete(webhook)
    session.flush()


def read_secret(config: Config, webhook: Webhook) -> str:
    """The webhook's secret. ``SecretKeyError`` / ``SecretCorruptError`` when it cannot be read."""
    return SecretBox.from_config(config).decrypt(webhook.secret_ciphertext, secret_place(webhook.project_id, webhook.id))


def list_webhooks(session: orm.Session, project_id: int) -> list[Webhook]:
    return list(session.scalars(sa.select(Webhook).where(Webhook.project_id == project_id).order_by(Webhook.id)))


def find_webhook(session: orm.Session, project_id: int, webhook_id: int) -> Webhook | None:
    webhook = session.get(Webhook, webhook_id)
    return webhook if webhook is not None and webhook.project_id == project_id else None


def recent_deliveries(session: orm.Session, webhook_id: int, limit: int = RECENT_DELIVERIES) -> list[WebhookDelivery]:
    """The webhook's deliveries, newest first."""
    return list(session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
                                .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(limit)))


def last_deliveries(session: orm.Session, webhook_ids: list[int]) -> dict[int, WebhookDelivery]:
    """The newest delivery of each of ``webhook_ids`` (for the list page)."""
    if not webhook_ids:
        return {}
    newest = (sa.select(sa.func.max(WebhookDelivery.id)).where(WebhookDelivery.webhook_id.in_(webhook_ids))
              .group_by(WebhookDelivery.webhook_id))
    rows = session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.id.in_(newest)))
    return {row.webhook_id: row for row in rows}


# -- signing ------------------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """The ``X-PRTS-Signature-256`` value of ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def encode_payload(payload: dict) -> str:
    """The body sent, fixed once: retries and redeliveries send these exact bytes."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


# -- enqueueing events --------------------------------------------------------------------


def enqueue_event(app, project_id: int, event: str, payload: dict, *, dedupe_key: str | None = None) -> list[int]:
    """Make one delivery of ``payload`` per active webhook of the project subscribed to
    ``event``, and queue an attempt of each after commit; the delivery ids.

    ``dedupe_key`` names one occurrence of the event: a second call with the same key makes
    no second delivery to the same webhook (its delivery id is derived from the key)."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r} (expected one of {', '.join(WEBHOOK_EVENTS)})")
    body = encode_payload(payload)
    made: list[int] = []
    with app.db.session() as s:
        hooks = s.scalars(sa.select(Webhook).where(Webhook.project_id == project_id, Webhook.active.is_(True))
                          .order_by(Webhook.id)).all()
        for hook in hooks:
            if event not in events_of(hook):
                continue
            ident = (str(uuid.uuid5(_DELIVERY_NAMESPACE, f"{hook.id}:{event}:{dedupe_key}")) if dedupe_key
                     else str(uuid.uuid4()))
            if dedupe_key and s.scalar(sa.select(WebhookDelivery.id).where(WebhookDelivery.uuid == ident)):
                continue
            row = WebhookDelivery(webhook_id=hook.id, event=event, uuid=ident, payload=body, status="pending",
                                  attempts=0, next_attempt_at=utcnow())
            try:
                with s.begin_nested():
                    s.add(row)
                    s.flush()
            except sa_exc.IntegrityError:  # made at the same moment by another worker
                continue
            made.append(row.id)
    for delivery_id in made:
        _queue_attempt(app, delivery_id)
    return made


def _queue_attempt(app, delivery_id: int, delay_seconds: float = 0) -> None:
    try:
        if delay_seconds > 0:
            app.tasks.deliver_webhook.schedule(args=(delivery_id,), delay=delay_seconds)
        else:
            app.tasks.deliver_webhook(delivery_id)
    except Exception:  # the queue is down: the periodic deliver_due sends it when it is due
        log.warning("could not queue webhook delivery %s", delivery_id, exc_info=True)


def run_payload(config: Config, project: Project, run: PipelineRun) -> dict:
    base = config.web.public_url.rstrip("/")
    url = f"{base}/{project.path}/-/pipelines/{run.number}" if base else ""
    return {
        "event": "run",
        "project": project.path,
        "run": {
            "id": run.id, "number": run.number, "status": run.status, "event": run.event, "ref": run.ref,
            "commit": run.commit_sha,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "url": url,
        },
    }


def run_finished(app, run_id: int) -> list[int]:
    """A run reached a final status: a "run" delivery to each subscribed webhook. Called by
    the engine after commit for each run that made the final transition; a second call for
    the same transition (same run, status and finish time) makes no second delivery."""
    with app.db.session() as s:
        run = s.get(PipelineRun, run_id)
        if run is None or run.status not in FINAL_RUN_STATUSES:
            return []
        project = s.get(Project, run.project_id)
        payload = run_payload(app.config, project, run)
        key = f"run:{run.id}:{run.status}:{run.finished_at.isoformat() if run.finished_at else ''}"
        project_id = project.id
    return enqueue_event(app, project_id, "run", payload, dedupe_key=key)


# -- sending ------------------------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    """How one attempt went. ``code`` is the final response's status (None when there was
    none); ``error`` says what went wrong in words; ``final`` means retrying cannot help."""

    code: int | None = None
    excerpt: str = ""
    error: str = ""
    final: bool = False
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300 and not self.error


def _pool(target: netguard.Target, timeout: float):
    # Connect to the vetted address; the name is only used for Host, SNI and certificate checks.
    options = dict(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=1)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(target.address, target.port, server_hostname=target.host,
                                           assert_hostname=target.host, cert_reqs="CERT_REQUIRED", **options)
    return urllib3.HTTPConnectionPool(target.address, target.port, **options)


def _read_capped(response) -> bytes:
    data = bytearray()
    for chunk in response.stream(8192, decode_content=True):
        data += chunk
        if len(data) >= RESPONSE_CAP:
            break
    return bytes(data[:RESPONSE_CAP])


def post(url: str, body: bytes, headers: dict[str, str], *, allowlist: netguard.Allowlist,
         timeout: float) -> Outcome:
    """POST ``body`` to ``url`` through the SSRF guard, following at most ``MAX_REDIRECTS``
    redirects by hand (each new URL vetted again; the body is sent again, since a webhook
    without its body is no delivery)."""
    started = time.monotonic()
    outcome = Outcome()
    current = url
    try:
        for hop in range(MAX_REDIRECTS + 1):
            try:
                target = netguard.check_url(current, allowlist)
            except netguard.BlockedAddress as exc:
                where = "redirected to " if hop else ""
                outcome.error, outcome.final = f"refused: {where}{current}: {exc}", True
                break
            except ValueError as exc:
                outcome.error = f"{current}: {exc}"
                outcome.final = hop > 0  # a bad Location: the receiver must fix it
                break
            pool = _pool(target, timeout)
            try:
                response = pool.urlopen("POST", target.path_and_query, body=body,
                                        headers={**headers, "Host": target.host_header},
                                        redirect=False, retries=False, preload_content=False,
                                        assert_same_host=False)
                try:
                    data = _read_capped(response)
                finally:
                    response.release_conn()
            finally:
                pool.close()
            outcome.code = response.status
            outcome.excerpt = data.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
            location = response.headers.get("Location")
            if response.status not in REDIRECTS or not location:
                break
            if hop == MAX_REDIRECTS:
                outcome.error = f"more than {MAX_REDIRECTS} redirects (the last one to {location[:200]})"
                break
            current = urllib.parse.urljoin(current, location)
    except urllib3.exceptions.HTTPError as exc:
        outcome.error = _describe(exc, timeout)
    except OSError as exc:
        outcome.error = f"connection failed: {exc.strerror or exc.__class__.__name__}"
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    if outcome.code is not None and not outcome.error and not 200 <= outcome.code < 300:
        outcome.error = f"the receiver answered {outcome.code}"
    return outcome


def _describe(exc: Exception, timeout: float) -> str:
    reason = getattr(exc, "reason", None) or exc
    # Before the timeout case: in urllib3 2 NewConnectionError is a ConnectTimeoutError.
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(reason, urllib3.exceptions.SSLError):
        return f"TLS failed: {reason}"
    if isinstance(reason, urllib3.exceptions.ProtocolError):
        return "the connection broke off (no valid HTTP answer)"
    return f"{reason.__class__.__name__}: {reason}"


# -- attempts -----------------------------------------------------------------------------


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: 1, 2, 4, ... minutes."""
    return dt.timedelta(minutes=2 ** max(0, attempts - 1))


def _lease(config: Config) -> dt.timedelta:
    # Long enough for every redirect hop to time out, then a margin.
    return dt.timedelta(seconds=config.webhooks.timeout_seconds * 2 * (MAX_REDIRECTS + 1) + 60)


@dataclasses.dataclass(frozen=True)
class _Claimed:
    attempt: int
    url: str
    event: str
    uuid: str
    body: bytes
    secret: str


def _claim(app, delivery_id: int, now: dt.datetime) -> _Claimed | None:
    """Take the next attempt of a pending, due delivery for this worker; None when it is not
    due, not pending, or someone else took it. Ends the delivery when it cannot be sent."""
    with app.db.session() as s:
        row = s.get(WebhookDelivery, delivery_id)
        if row is None or row.status != "pending":
            return None
        seen = row.attempts
        claimed = s.execute(
            sa.update(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == seen,
                sa.or_(WebhookDelivery.next_attempt_at.is_(None), WebhookDelivery.next_attempt_at <= now))
            .values(attempts=seen + 1, next_attempt_at=now + _lease(app.config))
            .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:
            return None
        hook = s.get(Webhook, row.webhook_id)
        problem = ""
        if not hook.active:
            problem = "not sent: the webhook is disabled"
        else:
            try:
                secret = read_secret(app.config, hook)
            except (SecretKeyError, SecretCorruptError) as exc:
                # The exception names the key's origin or the place, never a secret.
                log.error("webhook %s: its secret cannot be read: %s", hook.id, exc)
                problem = ("not sent: the webhook's secret cannot be read (an administrator finds the reason "
                           "in the server log); regenerate it")
        if problem:
            s.execute(sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(
                status="failed", error=problem, next_attempt_at=None, finished_at=utcnow(), response_code=None,
                response_excerpt="", duration_ms=None).execution_options(synchronize_session=False))
            return None
        return _Claimed(seen + 1, hook.url, row.event, row.uuid, row.payload.encode("utf-8"), secret)


def deliver(app, delivery_id: int, *, now: dt.datetime | None = None) -> str | None:
    """Make one attempt of a delivery if it is pending and due; its status afterwards
    ("delivered", "pending" with a retry queued, "failed"), or None when this worker did
    not make the attempt."""
    now = now or utcnow()
    claim = _claim(app, delivery_id, now)
    if claim is None:
        return None
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-PRTS-Event": claim.event,
        "X-PRTS-Delivery": claim.uuid,
        "X-PRTS-Signature-256": signature(claim.secret, claim.body),
    }
    config = app.config
    outcome = post(claim.url, claim.body, headers, allowlist=netguard.Allowlist.from_config(config),
                   timeout=config.webhooks.timeout_seconds)
    if outcome.ok:
        status, next_at = "delivered", None
    elif outcome.final or claim.attempt >= config.webhooks.max_attempts:
        status, next_at = "failed", None
    else:
        status, next_at = "pending", now + backoff(claim.attempt)
    with app.db.session() as s:
        written = s.execute(
            sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                             WebhookDelivery.attempts == claim.attempt,
                                             WebhookDelivery.status == "pending")
            .values(status=status, next_attempt_at=next_at, response_code=outcome.code,
                    response_excerpt=outcome.excerpt, error=outcome.error[:EXCERPT_CHARS],
                    duration_ms=outcome.duration_ms, finished_at=None if status == "pending" else utcnow())
            .execution_options(synchronize_session=False))
    if written.rowcount != 1:
        return None  # the lease ran out and another worker took the next attempt
    log.info("webhook delivery attempt", extra={"delivery": delivery_id, "attempt": claim.attempt,
                                                "status": status, "code": outcome.code})
    if status == "pending":
        _queue_attempt(app, delivery_id, (next_at - now).total_seconds())
    return status


def deliver_due(app, *, now: dt.datetime | None = None, limit: int = DUE_BATCH) -> list[int]:
    """Attempt the pending deliveries that are due (their queued message may be lost, or
    their worker died during an attempt); the ids attempted by this worker."""
    now = now or utcnow()
    with app.db.session() as s:
        due = list(s.scalars(sa.select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)))
    return [delivery_id for delivery_id in due if deliver(app, delivery_id, now=now) is not None]


def redeliver(app, delivery_id: int) -> int:
    """Send a delivery's payload again, as a new delivery with a new id (the old one stays in
    the log as it was); the new delivery's id."""
    with app.db.session() as s:
        old = s.get(WebhookDelivery, delivery_id)
        if old is None:
            raise LookupError(f"webhook delivery {delivery_id}")
        row = WebhookDelivery(webhook_id=old.webhook_id, event=old.event, uuid=str(uuid.uuid4()),
                              payload=old.payload, status="pending", attempts=0, next_attempt_at=utcnow())
        s.add(row)
        s.flush()
        new_id = row.id
    _queue_attempt(app, new_id)
    return new_id
