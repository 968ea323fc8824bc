"""The audit event hash: it covers every recorded field and the previous event's hash, and
it does not depend on how the time zone of ``at`` is written."""

from __future__ import annotations

import datetime as dt

import pytest

from appliance.audit import GENESIS_HASH, event_hash, url_without_secrets
from appliance.models import AuditEvent

AT = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)


def make_event(**changes) -> AuditEvent:
    fields = dict(seq=7, at=AT, actor="alice", actor_id=3, action="variable.set", target="acme/web:TOKEN",
                  project_id=11, organisation_id=2, address="192.0.2.1", outcome="success", detail="secret",
                  prev_hash=GENESIS_HASH) | changes
    return AuditEvent(**fields)


def test_the_hash_is_sha256_hex_and_stable():
    first, second = event_hash(make_event()), event_hash(make_event())
    assert first == second and len(first) == 64 and int(first, 16) >= 0


@pytest.mark.parametrize("field, value", [
    ("seq", 8), ("at", AT + dt.timedelta(microseconds=1)), ("actor", "mallory"), ("actor_id", None),
    ("action", "variable.deleted"), ("target", "acme/web:TOKEN2"), ("project_id", 12), ("organisation_id", None),
    ("address", "192.0.2.2"), ("outcome", "denied"), ("detail", "secret "), ("prev_hash", "1" * 64),
])
def test_every_field_is_covered(field, value):
    assert event_hash(make_event(**{field: value})) != event_hash(make_event())


def test_the_same_instant_in_another_zone_hashes_alike():
    cet = dt.timezone(dt.timedelta(hours=1))
    assert event_hash(make_event(at=AT.astimezone(cet))) == event_hash(make_event())


def test_fields_cannot_be_shifted_into_each_other():
    # Canonical JSON keeps field boundaries: moving text from one field to the next changes the hash.
    assert event_hash(make_event(actor="al", target="ice" + "acme/web:TOKEN")) != \
        event_hash(make_event(actor="alice", target="acme/web:TOKEN"))



@pytest.mark.parametrize("url, shown", [
    ("https://bot:TOKEN@git.example.com:8443/a/b.git?private_token=T#x", "https://git.example.com:8443/a/b.git"),
    ("http://[2001:db8::1]:9/hook?sig=abc", "http://[2001:db8::1]:9/hook"),
    ("https://example.com", "https://example.com"),
    ("http://[::1", "(an unreadable URL)"),
])
def test_urls_lose_their_secrets_before_the_trail(url, shown):
    assert url_without_secrets(url) == shown
