"""LDAP sign-in against a real OpenLDAP slapd (``ldap_server``): accounts made at first
sign-in, directory groups mapped to a team and a role (and taken away again), refused
passwords and hostile names, a refused service account, a directory that is down, the
local-account takeover guard, and StartTLS / LDAPS with a CA made here.

Each test gets its own subtree (``ou=t<random>``) in the session's slapd, so tests that
edit groups do not see each other. Database tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
import uuid

import ldap3
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.accounts import directory_groups, ldap, organisations, users
from appliance.config import ConfigError
from appliance.models import ExternalIdentity, Membership, Role, Team, TeamMember, User
from conftest import AuthActions, audit_events, make_config
from servers import LdapServer

ALICE_PASSWORD = "alice's directory password"
BOB_PASSWORD = "bob's directory password"
SERVICE_PASSWORD = "service account password"


class Directory:
    """One test's subtree: a service account, people alice and bob, groups devs and leads."""

    def __init__(self, server: LdapServer):
        self.server = server
        self.base = f"ou=t{secrets.token_hex(4)},{server.base_dn}"
        self.people = f"ou=people,{self.base}"
        self.groups = f"ou=groups,{self.base}"
        self.service = f"cn=reader,{self.base}"
        self.alice = f"uid=alice,{self.people}"
        self.bob = f"uid=bob,{self.people}"
        self.devs = f"cn=devs,{self.groups}"
        self.leads = f"cn=leads,{self.groups}"
        server.add_ldif(f"""\
dn: {self.base}
objectClass: organizationalUnit
ou: {self.base.split(",")[0][3:]}

dn: {self.people}
objectClass: organizationalUnit
ou: people

dn: {self.groups}
objectClass: organizationalUnit
ou: groups

dn: {self.service}
objectClass: person
cn: reader
sn: Reader
userPassword: {SERVICE_PASSWORD}

dn: {self.alice}
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.test
userPassword: {ALICE_PASSWORD}

dn: {self.bob}
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
mail: bob@example.test
userPassword: {BOB_PASSWORD}

dn: {self.devs}
objectClass: groupOfNames
cn: devs
member: {self.alice}

dn: {self.leads}
objectClass: groupOfNames
cn: leads
member: {self.alice}
member: {self.bob}
""")

    def modify(self, dn: str, changes: dict) -> None:
        with ldap3.Connection(ldap3.Server(self.server.url), self.server.admin_dn, self.server.admin_password,
                              auto_bind=True) as connection:
            assert connection.modify(dn, changes), connection.result

    def values(self, **overrides) -> dict:
        values = {
            "auth__ldap__url": self.server.url,
            "auth__ldap__bind_dn": self.service,
            "auth__ldap__bind_password": SERVICE_PASSWORD,
            "auth__ldap__user_base": self.people,
            "auth__ldap__group_base": self.groups,
            # Spelled in another case and spacing than the directory's: DNs still match.
            "auth__ldap__group_mappings": f"CN=devs, {self.groups}=acme/devs;\n {self.leads}=acme/web:maintainer;",
        }
        values.update(overrides)
        return values


@pytest.fixture
def directory(ldap_server) -> Directory:
    return Directory(ldap_server)


@pytest.fixture
def config(tmp_path, db_values, directory):
    # Lockout limits raised: the hostile-name test makes more failed attempts than they allow.
    return make_config(tmp_path / "data", **directory.values(), **db_values,
                       auth__max_failures_per_account=1000, auth__max_failures_per_address=1000)


@pytest.fixture
def site(appliance, admin):
    """acme/web (named by the mapping) and acme/other (not named)."""
    with appliance.db.session() as s:
        org = organisations.create_organisation(s, "acme")
        organisations.create_project(s, org, "web")
        organisations.create_project(s, org, "other")


def grants_of(app, username: str) -> dict[str, int]:
    with app.db.session() as s:
        user = users.get_user(s, username)
        rows = s.scalars(sa.select(Membership).where(Membership.user_id == user.id))
        out = {}
        for row in rows:
            org = organisations.find_organisation(s, "acme")
            if row.project_id:
                out[next(p.name for p in org.projects if p.id == row.project_id)] = row.role
            else:
                out["acme"] = row.role
        return out


def teams_of(app, username: str) -> list[str]:
    with app.db.session() as s:
        user = users.get_user(s, username)
        return sorted(s.scalars(sa.select(Team.name).join(TeamMember, TeamMember.team_id == Team.id)
                                .where(TeamMember.user_id == user.id)))


def test_first_sign_in_makes_the_account_and_the_groups_give_a_team_and_a_role(appliance, client, site, directory):
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 302
    with appliance.db.session() as s:
        alice = users.get_user(s, "alice")
        assert (alice.password_hash, alice.email, alice.is_admin) == (None, "alice@example.test", False)
        (link,) = s.scalars(sa.select(ExternalIdentity).where(ExternalIdentity.user_id == alice.id))
        assert link.provider == "ldap" and uuid.UUID(link.subject)  # entryUUID, not the DN
    assert teams_of(appliance, "alice") == ["devs"]
    assert grants_of(appliance, "alice") == {"web": Role.MAINTAINER}
    assert client.get("/acme/web").status_code == 200
    assert client.get("/acme/other").status_code == 404
    assert [e.target for e in audit_events(appliance, "team.member_added")] == ["acme/devs"]
    assert [(e.target, e.actor) for e in audit_events(appliance, "grant.added")] == [("acme/web", "ldap")]
    assert [e.detail for e in audit_events(appliance, "identity.linked")] == ["new account"]

    # An administrator's grant on a scope the mapping does not name is not the directory's to touch.
    with appliance.db.session() as s:
        org = organisations.find_organisation(s, "acme")
        organisations.grant(s, users.get_user(s, "alice"), organisations.find_project(s, org, "other"), Role.DEVELOPER)
    # alice leaves leads and changes her mail; the next sign-in follows the directory.
    directory.modify(directory.leads, {"member": [(ldap3.MODIFY_DELETE, [directory.alice])]})
    directory.modify(directory.alice, {"mail": [(ldap3.MODIFY_REPLACE, ["alice@new.example.test"])]})
    AuthActions(client).logout()
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 302
    assert grants_of(appliance, "alice") == {"other": Role.DEVELOPER}
    assert teams_of(appliance, "alice") == ["devs"]
    assert client.get("/acme/web").status_code == 404
    assert [e.target for e in audit_events(appliance, "grant.removed")] == ["acme/web"]
    with appliance.db.session() as s:
        assert users.get_user(s, "alice").email == "alice@new.example.test"
        assert s.scalar(sa.select(sa.func.count()).select_from(ExternalIdentity)) == 1  # linked once

    # Out of devs too: the team membership goes, the team stays.
    directory.modify(directory.devs, {"member": [(ldap3.MODIFY_ADD, [directory.bob])]})
    directory.modify(directory.devs, {"member": [(ldap3.MODIFY_DELETE, [directory.alice])]})
    AuthActions(client).logout()
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 302
    assert teams_of(appliance, "alice") == []
    assert [e.target for e in audit_events(appliance, "team.member_removed")] == ["acme/devs"]


def test_the_highest_role_of_several_groups_applies(appliance, site, directory):
    rules = directory_groups.parse_group_mappings(
        f"{directory.devs}=acme/web:developer; {directory.leads}=acme/web:admin; {directory.leads}=acme:viewer")
    entry = ldap.authenticate(ldap.LdapSettings.from_config(appliance.config), "alice", ALICE_PASSWORD)
    with appliance.db.session() as s:
        alice = User(username="alice", session_token="x")
        s.add(alice)
        s.flush()
        directory_groups.sync(s, alice, entry.groups, rules)
    assert grants_of(appliance, "alice") == {"web": Role.ADMIN, "acme": Role.VIEWER}
    with appliance.db.session() as s:
        directory_groups.sync(s, users.get_user(s, "alice"), frozenset({directory_groups.normalise_dn(directory.devs)}), rules)
    assert grants_of(appliance, "alice") == {"web": Role.DEVELOPER}
    assert [e.detail for e in audit_events(appliance, "grant.changed")] == ["user alice: admin to developer (directory group)"]


def test_wrong_passwords_and_unknown_names_are_refused(appliance, client, site, directory):
    for username, password in (("alice", BOB_PASSWORD), ("alice", "x"), ("nobody", ALICE_PASSWORD), ("reader", SERVICE_PASSWORD)):
        answer = AuthActions(client).login(username, password)
        assert answer.status_code == 401, username
        assert "Invalid username or password." in answer.get_data(as_text=True)
    settings = ldap.LdapSettings.from_config(appliance.config)
    assert ldap.authenticate(settings, "alice", "") is None  # an empty password never reaches a bind
    assert ldap.authenticate(settings, "alice", ALICE_PASSWORD).dn == directory.alice
    # A filter that matches more than one entry decides nothing, even with the right password.
    ambiguous = ldap.LdapSettings.from_config(appliance.config.with_overrides(
        auth__ldap__user_filter="(|(uid={username})(uid=bob))"))
    assert ldap.authenticate(ambiguous, "alice", ALICE_PASSWORD) is None
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 1  # only root


HOSTILE_NAMES = ["*)(uid=*", "*", "admin*", "al*", "*lice", "\\2a", "alice\x00", "alice)(|(uid=*", "(", ")",
                 "alice\\", "a" * 300, "uid=alice," + "x", "alice bob"]


def test_filter_injection_is_refused_before_any_search(appliance, client, site, directory):
    settings = ldap.LdapSettings.from_config(appliance.config)
    for name in HOSTILE_NAMES:
        for password in (ALICE_PASSWORD, BOB_PASSWORD):
            answer = AuthActions(client).login(name, password)
            assert answer.status_code in (400, 401), (name, answer.status_code)
            assert ldap.authenticate(settings, name, password) is None, name
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(User)) == 1
        assert s.scalar(sa.select(sa.func.count()).select_from(ExternalIdentity)) == 0


def test_a_refused_service_account_and_a_directory_that_is_down_say_so(appliance, site, directory):
    from appliance.context import Appliance
    from webapp import create_app

    for values, status, message in (
        (directory.values(auth__ldap__bind_password="wrong"), 503, "service account was refused"),
        (directory.values(auth__ldap__url=f"ldap://127.0.0.1:{_closed_port()}", auth__ldap__timeout=2), 503,
         "could not be reached"),
    ):
        broken = Appliance(appliance.config.with_overrides(**values))  # same database, other directory settings
        app = create_app(broken.config)
        app.extensions["prts"] = broken
        try:
            answer = AuthActions(app.test_client()).login("alice", ALICE_PASSWORD)
        finally:
            broken.close()
        assert answer.status_code == status and message in answer.get_data(as_text=True)
    failures = audit_events(appliance, "login.failed")
    assert [(e.actor, e.outcome) for e in failures] == [("alice", "failure")] * 2
    assert "service bind as cn=reader" in failures[0].detail and "invalidCredentials" in failures[0].detail
    assert "wrong" not in failures[0].detail


def test_a_local_account_is_never_taken_over_by_a_directory_entry(appliance, client, site, directory):
    with appliance.db.session() as s:
        users.create_user(s, "alice", "a local password, quite long")
        s.add(User(username="bob", password_hash=None, session_token="t"))  # e.g. made by GitHub sign-in
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 401  # checked locally only
    assert AuthActions(client).login("alice", "a local password, quite long").status_code == 302
    AuthActions(client).logout()
    assert AuthActions(client).login("bob", BOB_PASSWORD).status_code == 401
    (refused,) = [e for e in audit_events(appliance, "login.failed") if "not linked to the directory" in e.detail]
    assert refused.actor == "bob" and refused.target.startswith("ldap:uid=bob,")
    with appliance.db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(ExternalIdentity)) == 0
    assert grants_of(appliance, "bob") == {}


def test_a_disabled_directory_account_cannot_sign_in(appliance, client, site, directory):
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 302
    AuthActions(client).logout()
    with appliance.db.session() as s:
        users.get_user(s, "alice").is_active = False
    assert AuthActions(client).login("alice", ALICE_PASSWORD).status_code == 401


@pytest.mark.parametrize("text, named", [
    ("cn=devs,dc=x=acme", None),  # a team needs org/team
    ("cn=devs,dc=x", "not a DN"),  # the last '=' is taken as the separator: 'cn=devs,dc' is no DN
    ("=acme/devs", "has no '='"),
    ("cn=devs,dc=x=acme:boss", "unknown role"),
    ("cn=devs,dc=x=acme/web/extra:admin", "may contain only"),
    ("not a dn=acme/devs", "not a DN"),
    ("cn=devs,dc=x=admin:viewer", "reserved"),
])
def test_a_bad_group_mapping_stops_the_start_naming_the_entry(text, named, tmp_path):
    from webapp import create_app

    with pytest.raises(ConfigError) as raised:
        directory_groups.parse_group_mappings(f"cn=ok,dc=x=acme/ok; {text}")
    assert "auth.ldap.group_mappings" in str(raised.value) and repr(text) in str(raised.value)
    if named:
        assert named in str(raised.value)
    config = make_config(tmp_path, auth__ldap__url="ldap://127.0.0.1:1", auth__ldap__user_base="dc=x",
                         auth__ldap__group_mappings=text)
    with pytest.raises(ConfigError, match="group_mappings"):
        create_app(config)


def test_mapping_rules_parse():
    rules = directory_groups.parse_group_mappings("CN=Devs , OU=Groups,DC=x=acme/devs;cn=a,dc=x=acme:admin;cn=b,dc=x=acme/web:viewer")
    assert [(r.group, r.organisation, r.team, r.project, r.role) for r in rules] == [
        ("cn=devs,ou=groups,dc=x", "acme", "devs", None, None),
        ("cn=a,dc=x", "acme", None, None, Role.ADMIN),
        ("cn=b,dc=x", "acme", None, "web", Role.VIEWER),
    ]


# -- StartTLS and LDAPS -----------------------------------------------------------------------


def _closed_port() -> int:
    from servers import free_port

    return free_port()


def _certificate_authority(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it, as PEM files."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "PRTS test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {}
    for name, data in (
        ("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        ("server.pem", cert.public_bytes(serialization.Encoding.PEM)),
        ("server.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption())),
    ):
        (directory / name).write_bytes(data)
        paths[name] = directory / name
    return paths


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    files = _certificate_authority(tmp_path_factory.mktemp("ca"))
    server = LdapServer(tmp_path_factory.mktemp("slapd-tls"), tls_cert_file=files["server.pem"],
                        tls_key_file=files["server.key"])
    server.start()
    try:
        yield server, files["ca.pem"]
    finally:
        server.stop()


def test_starttls_and_ldaps_verify_the_directory_certificate(tls_server, tmp_path):
    server, ca_file = tls_server
    directory = Directory(server)
    for values in (
        dict(auth__ldap__starttls=True, auth__ldap__ca_file=str(ca_file)),
        dict(auth__ldap__url=server.ldaps_url, auth__ldap__ca_file=str(ca_file)),
    ):
        settings = ldap.LdapSettings.from_config(make_config(tmp_path, **directory.values(**values)))
        entry = ldap.authenticate(settings, "alice", ALICE_PASSWORD)
        assert entry is not None and entry.email == "alice@example.test", values
        assert ldap.authenticate(settings, "alice", BOB_PASSWORD) is None
    # Without the CA the certificate is not trusted, and nothing is sent over the connection.
    for values in (dict(auth__ldap__starttls=True), dict(auth__ldap__url=server.ldaps_url)):
        settings = ldap.LdapSettings.from_config(make_config(tmp_path, **directory.values(**values)))
        with pytest.raises(ldap.DirectoryUnavailable, match="could not be reached") as raised:
            ldap.authenticate(settings, "alice", ALICE_PASSWORD)
        assert re.search(r"certificate|TLS|SSL", raised.value.detail, re.I), raised.value.detail


def test_prts_config_check_names_a_bad_mapping(tmp_path):
    from click.testing import CliRunner

    from appliance.cli import main

    env = {"PRTS_DATA_DIR": str(tmp_path), "PRTS_AUTH_LDAP_URL": "ldap://127.0.0.1:1",
           "PRTS_AUTH_LDAP_USER_BASE": "dc=x", "PRTS_AUTH_LDAP_GROUP_MAPPINGS": "cn=a,dc=x=acme:boss"}
    result = CliRunner().invoke(main, ["config", "check"], env=env)
    assert result.exit_code == 2 and "auth.ldap.group_mappings: entry 'cn=a,dc=x=acme:boss'" in result.output
    env["PRTS_AUTH_LDAP_GROUP_MAPPINGS"] = "cn=a,dc=x=acme:admin"
    assert CliRunner().invoke(main, ["config", "check"], env=env).exit_code == 0
