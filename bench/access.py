"""Identity and access benchmarks: what the audit trail and the permission check cost.

    .venv/bin/python bench/access.py audit [--events 400] [--threads 4] [--servers]
    .venv/bin/python bench/access.py policy [--checks 2000] [--servers]
    .venv/bin/python bench/access.py ldap [--signins 100]

``audit``: a small state-changing transaction (one UPDATE and its commit, like most
settings changes) timed alone and with ``audit.record`` in the same transaction — the
event row, its hash and the chain head it locks. One writer gives the per-action cost
(p50 of both and their ratio); ``--threads`` writers at once show what the chain head,
which serialises audited transactions, does to throughput (transactions/s with and
without auditing, and their ratio).

``policy``: ``policy.can`` for a user who holds grants through two teams on the
organisation and directly on the project — the common case of the most-specific-scope
rules — against the cheapest possible check, one primary-key SELECT of the same user,
as the reference: the ratio says how many such round trips a permission check costs.

``ldap``: a directory sign-in through ``identity.authenticate_password`` against a real
slapd (service bind, search, user bind, group search, then the local account and group
mapping sync in the database) beside the reference, the same LDAP work done bare with
ldap3 (service bind, search, user bind, group search; no database): the ratio is what the
appliance adds. A local argon2id sign-in is printed for scale.

``--servers`` runs on a PostgreSQL server started on a free loopback port
(tests/servers.py) instead of the embedded SQLite database.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import sqlalchemy as sa  # noqa: E402

from appliance import audit, migrate  # noqa: E402
from appliance.accounts import organisations, policy, users  # noqa: E402
from appliance.context import Appliance  # noqa: E402
from appliance.models import Membership, Project, Role, Team, TeamMember, User  # noqa: E402
from appliance.models.base import utcnow  # noqa: E402
from tests.conftest import make_config  # noqa: E402

PASSWORD = "bench correct horse battery"


@contextlib.contextmanager
def database(use_servers: bool, tmp: Path):
    if not use_servers:
        yield {}
        return
    from servers import PostgresServer

    with PostgresServer(tmp / "pg") as pg:
        yield {"database__url": pg.create_database("bench")}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _touch(app: Appliance, user_id: int, audited: bool) -> None:
    with app.db.session() as s:
        user = s.get(User, user_id)
        user.last_login_at = utcnow()
        if audited:
            audit.record(s, "bench.touched", actor=user, target=user.username, address="127.0.0.1")


def _serial(app: Appliance, user_id: int, events: int, audited: bool) -> list[float]:
    samples = []
    for _ in range(events):
        t0 = time.perf_counter()
        _touch(app, user_id, audited)
        samples.append(time.perf_counter() - t0)
    return samples


def _concurrent(app: Appliance, user_ids: list[int], events: int, audited: bool) -> float:
    """Transactions per second with one thread per user, each touching its own row."""
    per_thread = events // len(user_ids)
    threads = [threading.Thread(target=_serial, args=(app, uid, per_thread, audited)) for uid in user_ids]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return per_thread * len(user_ids) / (time.perf_counter() - t0)


def bench_audit(args) -> None:
    with tempfile.TemporaryDirectory() as tmp_name, database(args.servers, Path(tmp_name)) as values:
        tmp = Path(tmp_name)
        app = Appliance(make_config(tmp / "data", **values))
        migrate.upgrade(app.db)
        with app.db.session() as s:
            ids = [users.create_user(s, f"bench{i}", PASSWORD).id for i in range(args.threads)]
        setup = "PostgreSQL" if args.servers else "SQLite (embedded)"
        _serial(app, ids[0], 20, True)  # warm-up: connections, statement caches, the chain head row
        plain = _serial(app, ids[0], args.events, False)
        audited = _serial(app, ids[0], args.events, True)
        p_plain, p_audited = percentile(plain, 0.5) * 1000, percentile(audited, 0.5) * 1000
        print(f"one writer, {setup}, {args.events} transactions each: plain p50 {p_plain:.2f} ms, "
              f"audited p50 {p_audited:.2f} ms (p95 {percentile(audited, 0.95) * 1000:.2f} ms); "
              f"ratio {p_audited / p_plain:.2f}x")
        tps_plain = _concurrent(app, ids, args.events, False)
        tps_audited = _concurrent(app, ids, args.events, True)
        print(f"{args.threads} writers at once, {setup}: plain {tps_plain:.0f} tx/s, audited {tps_audited:.0f} tx/s; "
              f"ratio {tps_audited / tps_plain:.2f}x")
        with app.db.session() as s:
            count = s.scalar(sa.select(sa.func.count()).select_from(audit.trail.AuditEvent))
        print(f"events written: {count}")
        app.close()


def bench_policy(args) -> None:
    with tempfile.TemporaryDirectory() as tmp_name, database(args.servers, Path(tmp_name)) as values:
        tmp = Path(tmp_name)
        app = Appliance(make_config(tmp / "data", **values))
        migrate.upgrade(app.db)
        with app.db.session() as s:
            owner = users.create_user(s, "owner", PASSWORD, is_admin=True)
            org = organisations.create_organisation(s, "bench")
            project = organisations.create_project(s, org, "app", creator=owner)
            user = users.create_user(s, "member", PASSWORD)
            for name, role in (("readers", Role.VIEWER), ("writers", Role.DEVELOPER)):
                team = Team(organisation_id=org.id, name=name)
                s.add(team)
                s.flush()
                s.add(TeamMember(team_id=team.id, user_id=user.id))
                s.add(Membership(team_id=team.id, organisation_id=org.id, role=int(role)))
            s.add(Membership(user_id=user.id, project_id=project.id, role=int(Role.MAINTAINER)))
            user_id, project_id = user.id, project.id
        setup = "PostgreSQL" if args.servers else "SQLite (embedded)"
        with app.db.session() as s:
            user, project = s.get(User, user_id), s.get(Project, project_id)
            assert policy.can(s, user, "pipeline.settings", project)
            t0 = time.perf_counter()
            for _ in range(args.checks):
                policy.can(s, user, "pipeline.settings", project)
            per_check = (time.perf_counter() - t0) / args.checks
            t0 = time.perf_counter()
            for _ in range(args.checks):
                s.execute(sa.select(User.id).where(User.id == user_id)).scalar_one()
            per_select = (time.perf_counter() - t0) / args.checks
        print(f"policy.can, {setup}, {args.checks} checks (two team grants on the organisation, a user grant on "
              f"the project): {per_check * 1e6:.0f} us per check; one primary-key SELECT {per_select * 1e6:.0f} us; "
              f"ratio {per_check / per_select:.1f}x")
        app.close()


LDAP_PASSWORD = "directory password of the bench"


def _directory(server) -> dict:
    base = server.base_dn
    server.add_ldif(f"""\
dn: ou=people,{base}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{base}
objectClass: organizationalUnit
ou: groups

dn: cn=reader,{base}
objectClass: person
cn: reader
sn: Reader
userPassword: {LDAP_PASSWORD}

dn: uid=dana,ou=people,{base}
objectClass: inetOrgPerson
uid: dana
cn: Dana
sn: Bench
mail: dana@example.test
userPassword: {LDAP_PASSWORD}

dn: cn=devs,ou=groups,{base}
objectClass: groupOfNames
cn: devs
member: uid=dana,ou=people,{base}
""")
    return {"auth__ldap__url": server.url, "auth__ldap__bind_dn": f"cn=reader,{base}",
            "auth__ldap__bind_password": LDAP_PASSWORD, "auth__ldap__user_base": f"ou=people,{base}",
            "auth__ldap__group_base": f"ou=groups,{base}",
            "auth__ldap__group_mappings": f"cn=devs,ou=groups,{base}=bench/devs"}


def _bare_ldap_signin(values: dict, username: str) -> None:
    import ldap3
    from ldap3.utils.conv import escape_filter_chars

    server = ldap3.Server(values["auth__ldap__url"], get_info=ldap3.NONE)
    with ldap3.Connection(server, values["auth__ldap__bind_dn"], LDAP_PASSWORD, auto_bind=True) as service:
        service.search(values["auth__ldap__user_base"], f"(uid={escape_filter_chars(username)})",
                       attributes=["mail", "cn"], size_limit=2)
        dn = service.entries[0].entry_dn
        with ldap3.Connection(server, dn, LDAP_PASSWORD, auto_bind=True):
            pass
        service.search(values["auth__ldap__group_base"], f"(member={escape_filter_chars(dn)})", attributes=[])


def bench_ldap(args) -> None:
    from servers import LdapServer

    from appliance.accounts import identity

    with tempfile.TemporaryDirectory() as tmp_name, LdapServer(Path(tmp_name) / "ldap") as server:
        tmp = Path(tmp_name)
        values = _directory(server)
        app = Appliance(make_config(tmp / "data", **values))
        migrate.upgrade(app.db)
        with app.db.session() as s:
            organisations.create_organisation(s, "bench")
            users.create_user(s, "local", PASSWORD)

        def appliance_signin(name: str, password: str) -> None:
            with app.db.session() as s:
                user, _ = identity.authenticate_password(app.config, s, name, password)
                assert user is not None

        appliance_signin("dana", LDAP_PASSWORD)  # first sign-in makes the account and the team
        timings = {}
        for label, fn in (("appliance", lambda: appliance_signin("dana", LDAP_PASSWORD)),
                          ("bare ldap3", lambda: _bare_ldap_signin(values, "dana")),
                          ("local argon2id", lambda: appliance_signin("local", PASSWORD))):
            samples = []
            for _ in range(args.signins):
                t0 = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t0)
            timings[label] = percentile(samples, 0.5) * 1000
        print(f"LDAP sign-in against slapd, {args.signins} each, p50: appliance {timings['appliance']:.1f} ms, "
              f"bare ldap3 {timings['bare ldap3']:.1f} ms; ratio {timings['appliance'] / timings['bare ldap3']:.2f}x "
              f"(local argon2id sign-in for scale: {timings['local argon2id']:.1f} ms)")
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audit")
    a.add_argument("--events", type=int, default=400)
    a.add_argument("--threads", type=int, default=4)
    a.add_argument("--servers", action="store_true")
    p = sub.add_parser("policy")
    p.add_argument("--checks", type=int, default=2000)
    p.add_argument("--servers", action="store_true")
    ld = sub.add_parser("ldap")
    ld.add_argument("--signins", type=int, default=100)
    args = parser.parse_args()
    {"audit": bench_audit, "policy": bench_policy, "ldap": bench_ldap}[args.command](args)


if __name__ == "__main__":
    main()
