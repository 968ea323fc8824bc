"""The one typed configuration reader of the appliance.

Layers, each overriding the one before: built-in defaults -> ``/etc/prts/prts.toml`` ->
the TOML file named by ``$PRTS_CONFIG`` -> ``PRTS_*`` environment variables
(``PRTS_WEB_LISTEN`` sets ``web.listen``; a top-level key such as ``data_dir`` is
``PRTS_DATA_DIR``). A secret may instead be given as a path to a file holding it, as
``<key>_file`` in TOML or ``PRTS_<KEY>_FILE`` in the environment, which is how systemd's
``LoadCredential`` hands secrets over.

Every key is declared once in ``SETTINGS``; the NixOS module's options are held against
that list by a test. A value of the wrong type fails at start with the key's name, the
expected type and where the value came from; an unknown key gets a warning naming it
(``Config.warnings``, which each program reports once its logging is set up).
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

SYSTEM_CONFIG = pathlib.Path("/etc/prts/prts.toml")
ENV_PREFIX = "PRTS_"
# PRTS_* variables that are not configuration keys: they steer the reader itself or tools.
RESERVED_ENV = {"PRTS_CONFIG", "PRTS_NIXPKGS_LIB"}
REDACTED = "********"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and what was expected."""


def _default_data_dir() -> str:
    # One default for every command (`prts up`, `prts user create`, ...) so that the admin
    # commands always find the data that `up` made, whichever directory they run from.
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "prts")


# -- value types ---------------------------------------------------------------------


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value.strip())
    raise TypeError


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError


def _parse_listen(value: Any) -> str:
    text = _parse_str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TypeError
    return text


@dataclass(frozen=True)
class ValueType:
    name: str  # what an operator reads in an error: "integer", "boolean", ...
    parse: Callable[[Any], Any]
    kind: str  # what a schema reader (the NixOS module) maps to its own type: str, int, bool, listen


STR = ValueType("string", _parse_str, "str")
INT = ValueType("integer", _parse_int, "int")
BOOL = ValueType("boolean (true/false)", _parse_bool, "bool")
LISTEN = ValueType("host:port, e.g. 127.0.0.1:8080", _parse_listen, "listen")


@dataclass(frozen=True)
class Setting:
    key: str  # dotted: "section.name", or "name" for a top-level key
    type: ValueType
    default: Any
    doc: str
    secret: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.replace(".", "_").upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", STR, None, "Directory for the embedded backends, keys and run state."),
    # web
    Setting("web.listen", LISTEN, "127.0.0.1:8080", "Address gunicorn binds to."),
    Setting("web.workers", INT, 2, "gunicorn worker processes.", minimum=1),
    Setting("web.threads", INT, 4, "Threads per gunicorn worker.", minimum=1),
    Setting("web.proxy_hops", INT, 0, "Reverse proxies in front of the web server whose X-Forwarded-For, -Proto and -Host headers are trusted (1 behind one nginx); 0 trusts none, so rate limits and the audit trail see the connecting address.", minimum=0),
    Setting("web.public_url", STR, "", "External URL; https:// marks session cookies Secure."),
    Setting("web.secret_key", STR, "", "Key signing sessions and CSRF tokens; generated into data_dir when empty.", secret=True),
    # database
    Setting("database.url", STR, "", "SQLAlchemy URL; empty means SQLite in data_dir.", secret=True),
    Setting("database.pool_size", INT, 5, "Connections kept per process (PostgreSQL).", minimum=1),
    # queue
    Setting("queue.backend", STR, "sqlite", "Huey storage.", choices=("sqlite", "redis")),
    Setting("queue.url", STR, "", "redis:// URL when queue.backend = redis.", secret=True),
    Setting("queue.workers", INT, 2, "Huey consumer worker threads.", minimum=1),
    # pub/sub
    Setting("pubsub.backend", STR, "memory", "Live event fan-out.", choices=("memory", "redis")),
    Setting("pubsub.url", STR, "", "redis:// URL when pubsub.backend = redis.", secret=True),
    # object store
    Setting("objects.backend", STR, "directory", "Where logs and artifacts live.", choices=("directory", "s3")),
    Setting("objects.path", STR, "", "Directory when objects.backend = directory; empty means data_dir/objects."),
    Setting("objects.endpoint", STR, "", "S3 endpoint host:port."),
    Setting("objects.bucket", STR, "prts", "S3 bucket (created when missing)."),
    Setting("objects.region", STR, "us-east-1", "S3 region."),
    Setting("objects.secure", BOOL, True, "Use TLS to reach the S3 endpoint."),
    Setting("objects.access_key", STR, "", "S3 access key.", secret=True),
    Setting("objects.secret_key", STR, "", "S3 secret key.", secret=True),
    # analytics
    Setting("analytics.backend", STR, "chdb", "Analytics engine.", choices=("chdb", "clickhouse")),
    Setting("analytics.path", STR, "", "chdb data directory; empty means data_dir/analytics."),
    Setting("analytics.host", STR, "", "ClickHouse server host."),
    Setting("analytics.port", INT, 9000, "ClickHouse native protocol port.", minimum=1),
    Setting("analytics.database", STR, "prts", "ClickHouse database (created when missing)."),
    Setting("analytics.user", STR, "default", "ClickHouse user."),
    Setting("analytics.password", STR, "", "ClickHouse password.", secret=True),
    # accounts
    Setting("auth.max_failures_per_account", INT, 5, "Failed sign-ins per account before a lockout.", minimum=1),
    Setting("auth.max_failures_per_address", INT, 20, "Failed sign-ins per client address before a lockout.", minimum=1),
    Setting("auth.lockout_minutes", INT, 15, "Window and lockout length for failed sign-ins.", minimum=1),
    Setting("auth.fresh_minutes", INT, 10, "Minutes after entering credentials during which tokens, secrets and roles may be changed without entering them again.", minimum=1),
    # directory and single sign-on (docs/sso.md)
    Setting("auth.ldap.url", STR, "", "ldap:// or ldaps:// URL of the directory; empty turns LDAP sign-in off."),
    Setting("auth.ldap.starttls", BOOL, False, "Upgrade an ldap:// connection with StartTLS before binding."),
    Setting("auth.ldap.ca_file", STR, "", "PEM file of the CA that signed the directory's certificate; empty means the system's CAs."),
    Setting("auth.ldap.timeout", INT, 10, "Seconds to connect to the directory and to wait for each answer.", minimum=1),
    Setting("auth.ldap.bind_dn", STR, "", "DN of the service account that searches for users; empty searches anonymously."),
    Setting("auth.ldap.bind_password", STR, "", "Password of the service account.", secret=True),
    Setting("auth.ldap.user_base", STR, "", "DN under which users are searched."),
    Setting("auth.ldap.user_filter", STR, "(uid={username})", "Filter finding one user; {username} is the escaped name typed at sign-in."),
    Setting("auth.ldap.group_base", STR, "", "DN under which groups are searched; empty reads the user's memberOf instead."),
    Setting("auth.ldap.group_filter", STR, "(member={dn})", "Filter finding the user's groups; {dn} is the user's escaped DN, {username} the escaped name."),
    Setting("auth.ldap.group_mappings", STR, "", "Groups to teams and roles: 'GROUP_DN=org/team', 'GROUP_DN=org:role' or 'GROUP_DN=org/project:role' entries separated by ';'."),
    Setting("auth.oidc.issuer", STR, "", "OpenID Connect issuer URL (discovery at /.well-known/openid-configuration); empty turns OIDC sign-in off."),
    Setting("auth.oidc.client_id", STR, "", "Client id registered at the OIDC provider."),
    Setting("auth.oidc.client_secret", STR, "", "Client secret registered at the OIDC provider.", secret=True),
    Setting("auth.oidc.name", STR, "SSO", "Name on the sign-in button; also part of the stored link (oidc:<name>), so changing it unlinks accounts."),
    Setting("auth.github.client_id", STR, "", "GitHub OAuth app client id; empty turns GitHub sign-in off."),
    Setting("auth.github.client_secret", STR, "", "GitHub OAuth app client secret.", secret=True),
    Setting("auth.github.api_url", STR, "https://api.github.com", "GitHub API URL (GitHub Enterprise: https://HOST/api/v3)."),
    Setting("auth.github.web_url", STR, "https://github.com", "GitHub web URL where users authorise the app."),
    Setting("auth.gitlab.client_id", STR, "", "GitLab application id; empty turns GitLab sign-in off."),
    Setting("auth.gitlab.client_secret", STR, "", "GitLab application secret.", secret=True),
    Setting("auth.gitlab.url", STR, "https://gitlab.com", "GitLab URL (self-managed: your instance)."),
    Setting("auth.session_idle_minutes", INT, 120, "A signed-in session not used for this many minutes ends.", minimum=1),
    Setting("auth.session_max_hours", INT, 168, "A signed-in session ends this many hours after sign-in, however busy.", minimum=1),
    # pipelines
    Setting("pipelines.executor", STR, "local", "Executor for jobs that name none.", choices=("local",)),
    Setting("pipelines.lease_seconds", INT, 30, "A running job's lease; heartbeats renew it every third of it.", minimum=3),
    Setting("pipelines.default_timeout", INT, 3600, "Seconds a job may run when its pipeline sets no timeout.", minimum=1),
    Setting("pipelines.job_concurrency", INT, 4, "Jobs of one project running at once, unless the project sets its own.", minimum=1),
    Setting("pipelines.lost_job_retries", INT, 2, "Times a job whose worker vanished is queued again before it fails.", minimum=0),
    Setting("pipelines.max_log_bytes", INT, 100 * 1024 * 1024, "Per-job log size cap in bytes; output past it is dropped with a marker.", minimum=1024),
    Setting("pipelines.artifact_retention_days", INT, 30, "Days artifacts are kept; 0 keeps them forever.", minimum=0),
    Setting("pipelines.max_artifact_bytes", INT, 1024 * 1024 * 1024, "Largest artifact archive a job may upload.", minimum=1024),
    Setting("pipelines.local.isolation", STR, "auto", "Sandbox for the local executor: bubblewrap when installed (auto), always, or none.", choices=("auto", "bubblewrap", "none")),
    Setting("pipelines.local.network", BOOL, True, "Whether jobs on the local executor reach the network."),
    Setting("pipelines.local.max_processes", INT, 4096, "RLIMIT_NPROC for job processes.", minimum=16),
    Setting("pipelines.local.max_memory_mb", INT, 8192, "RLIMIT_AS for each job process, in MiB.", minimum=64),
    Setting("pipelines.local.max_file_mb", INT, 10240, "RLIMIT_FSIZE: the largest file a job may write, in MiB.", minimum=1),
    # git hosting
    Setting("git.max_push_bytes", INT, 2 * 1024 * 1024 * 1024, "Largest request body a git push may send, in bytes.", minimum=1024),
    Setting("git.http_timeout", INT, 600, "Seconds one git clone, fetch or push over HTTP may take.", minimum=10),
    # webhooks
    Setting("webhooks.max_body_bytes", INT, 25 * 1024 * 1024, "Inbound webhook bodies larger than this are refused unread.", minimum=1024),
    Setting("webhooks.allowed_hosts", STR, "", "Comma-separated hosts, addresses or CIDR networks that outbound webhooks and mirrors may reach although they are loopback, private or link-local."),
    Setting("webhooks.timeout_seconds", INT, 10, "Seconds one outbound webhook attempt may take.", minimum=1),
    Setting("webhooks.max_attempts", INT, 5, "Attempts per outbound delivery before it is marked failed (backing off 1, 2, 4, ... minutes).", minimum=1),
    # secrets
    Setting("secrets.key", STR, "", "Base64 of the 32-byte AES-256-GCM key that encrypts project secrets; generated into data_dir when empty.", secret=True),
    # logging
    Setting("log.level", STR, "info", "Log level.", choices=("debug", "info", "warning", "error")),
    Setting("log.format", STR, "json", "Log line format.", choices=("json", "text")),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}


def schema() -> list[dict[str, Any]]:
    """Every key as plain data: what `prts config schema` prints and the NixOS module reads.

    ``nixos-modules/settings.json`` is this list; a test holds the two equal, so the
    module's typed options cannot drift from the keys the reader accepts.
    """
    return [
        {
            "key": s.key,
            "type": s.type.kind,
            "default": s.default,
            "description": s.doc,
            "secret": s.secret,
            "choices": list(s.choices),
            "minimum": s.minimum,
            "env": s.env,
        }
        for s in SETTINGS
    ]
BY_ENV: dict[str, Setting] = {s.env: s for s in SETTINGS}

# Keys that must be set when another key takes a given value.
REQUIRED_WHEN: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("queue.backend", "redis", ("queue.url",)),
    ("pubsub.backend", "redis", ("pubsub.url",)),
    ("objects.backend", "s3", ("objects.endpoint", "objects.access_key", "objects.secret_key")),
    ("analytics.backend", "clickhouse", ("analytics.host",)),
)


# -- the loaded configuration --------------------------------------------------------


class Section:
    """Attribute access to one section: ``config.web.listen``."""

    def __init__(self, config: "Config", name: str):
        self._config = config
        self._name = name

    def __getattr__(self, item: str) -> Any:
        key = f"{self._name}.{item}"
        if key not in BY_KEY and any(k.startswith(key + ".") for k in BY_KEY):
            return Section(self._config, key)  # a nested section: config.pipelines.local.network
        return self._config[key]


class Config:
    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str], warnings: Iterable[str] = ()):
        self._values = dict(values)
        self.sources = dict(sources)  # key -> where its value came from
        self.warnings = list(warnings)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, item: str) -> Any:
        if item.startswith("_"):
            raise AttributeError(item)
        if item in self._values:
            return self._values[item]
        if any(k.startswith(item + ".") for k in self._values):
            return Section(self, item)
        raise AttributeError(item)

    def with_overrides(self, **values: Any) -> "Config":
        """A copy with some keys replaced (dotted keys written with ``__``: ``web__listen``)."""
        raw = {s.key: self._values[s.key] for s in SETTINGS}
        for name, value in values.items():
            raw[name.replace("__", ".")] = value
        return load(env={}, files=(), overrides=raw)

    # Paths derived from data_dir, so every process agrees on where things live.
    @property
    def data_path(self) -> pathlib.Path:
        return pathlib.Path(self._values["data_dir"]).expanduser().resolve()

    @property
    def database_url(self) -> str:
        url = self._values["database.url"]
        if not url:
            return f"sqlite:///{self.data_path / 'prts.db'}"
        # psycopg 3 is the only PostgreSQL driver we ship; accept the plain scheme too.
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+psycopg://" + url[len(plain):]
        return url

    @property
    def objects_path(self) -> pathlib.Path:
        return pathlib.Path(self._values["objects.path"] or self.data_path / "objects")

    @property
    def analytics_path(self) -> pathlib.Path:
        return pathlib.Path(self._values["analytics.path"] or self.data_path / "analytics")

    @property
    def spool_path(self) -> pathlib.Path:
        """Job output is written here first, so a worker's death loses none of it."""
        return self.data_path / "spool"

    @property
    def workspaces_path(self) -> pathlib.Path:
        return self.data_path / "workspaces"

    @property
    def repositories_path(self) -> pathlib.Path:
        return self.data_path / "repositories"

    @property
    def queue_path(self) -> pathlib.Path:
        return self.data_path / "queue.db"

    @property
    def session_cookie_secure(self) -> bool:
        return self._values["web.public_url"].lower().startswith("https://")

    def redacted(self) -> dict[str, Any]:
        """Every effective value, secrets replaced by a fixed mask (or left empty when unset)."""
        out = {}
        for s in SETTINGS:
            value = self._values[s.key]
            out[s.key] = REDACTED if s.secret and value not in ("", None) else value
        # A database URL is secret only for its password; show the rest, it helps operators.
        out["database.url"] = _redact_url(self.database_url)
        return out


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:{REDACTED}@{host}"


# -- loading -------------------------------------------------------------------------


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _read_toml(path: pathlib.Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return _flatten(tomllib.load(fh))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc


def _read_secret_file(path: str, key: str, source: str) -> str:
    try:
        return pathlib.Path(path).expanduser().read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{key}_file ({source}): cannot read {path}: {exc.strerror}") from exc


def _assign(raw: dict, sources: dict, warnings: list, key: str, value: Any, source: str) -> None:
    if key.endswith("_file") and key[: -len("_file")] in BY_KEY and BY_KEY[key[: -len("_file")]].secret:
        base = key[: -len("_file")]
        if not isinstance(value, str):
            raise ConfigError(f"{key} ({source}): expected a file path (string), got {value!r}")
        raw[base] = _read_secret_file(value, base, source)
        sources[base] = f"{source} (file {value})"
    elif key in BY_KEY:
        raw[key] = value
        sources[key] = source
    else:
        warnings.append(f"unknown configuration key {key!r} in {source} (ignored)")


def load(
    env: Mapping[str, str] | None = None,
    files: Iterable[pathlib.Path] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read the configuration from its layers; raise ``ConfigError`` on the first bad value.

    ``env`` defaults to ``os.environ``; ``files`` to the system file then ``$PRTS_CONFIG``.
    """
    env = os.environ if env is None else env
    if files is None:
        files = [SYSTEM_CONFIG] if SYSTEM_CONFIG.exists() else []
        if env.get("PRTS_CONFIG"):
            files.append(pathlib.Path(env["PRTS_CONFIG"]))
    raw: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources = {s.key: "default" for s in SETTINGS}
    warnings: list[str] = []

    for path in files:
        for key, value in _read_toml(pathlib.Path(path)).items():
            _assign(raw, sources, warnings, key, value, str(path))
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        if name in BY_ENV:
            _assign(raw, sources, warnings, BY_ENV[name].key, value, name)
        elif name.endswith("_FILE") and name[: -len("_FILE")] in BY_ENV:
            _assign(raw, sources, warnings, BY_ENV[name[: -len("_FILE")]].key + "_file", value, name)
        else:
            warnings.append(f"unknown configuration variable {name} (ignored)")
    for key, value in (overrides or {}).items():
        _assign(raw, sources, warnings, key, value, "override")

    if raw["data_dir"] is None:
        raw["data_dir"] = _default_data_dir()
    values = {key: _coerce(BY_KEY[key], value, sources[key]) for key, value in raw.items()}
    for key, choice, needed in REQUIRED_WHEN:
        if values[key] == choice:
            for need in needed:
                if values[need] in ("", None):
                    setting = BY_KEY[need]
                    raise ConfigError(
                        f"{need} is required when {key} = {choice!r} "
                        f"(expected {setting.type.name}: {setting.doc}; set it in prts.toml or {setting.env})"
                    )
    return Config(values, sources, warnings)


def _coerce(setting: Setting, value: Any, source: str) -> Any:
    try:
        parsed = setting.type.parse(value)
    except (TypeError, ValueError):
        shown = REDACTED if setting.secret else repr(value)
        raise ConfigError(f"{setting.key} ({source}): expected {setting.type.name}, got {shown}") from None
    if setting.choices and parsed not in setting.choices:
        raise ConfigError(f"{setting.key} ({source}): expected one of {', '.join(setting.choices)}, got {parsed!r}")
    if setting.minimum is not None and parsed < setting.minimum:
        raise ConfigError(f"{setting.key} ({source}): expected {setting.type.name} >= {setting.minimum}, got {parsed!r}")
    return parsed
