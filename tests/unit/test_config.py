import pathlib

import pytest

from appliance.config import BY_KEY, REDACTED, SETTINGS, ConfigError, load


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.write_text(text)
    return path


def test_defaults_are_embedded(tmp_path):
    cfg = load(env={"PRTS_DATA_DIR": str(tmp_path)}, files=[])
    assert cfg.web.listen == "127.0.0.1:8080"
    assert cfg.database_url == f"sqlite:///{tmp_path.resolve() / 'prts.db'}"
    assert (cfg.queue.backend, cfg.pubsub.backend, cfg.objects.backend, cfg.analytics.backend) == (
        "sqlite", "memory", "directory", "chdb")
    assert cfg.sources["web.listen"] == "default"


def test_layers_override_in_order(tmp_path):
    system = write(tmp_path / "system.toml", '[web]\nlisten = "0.0.0.0:1"\nworkers = 3\nthreads = 7\n')
    user = write(tmp_path / "user.toml", "[web]\nworkers = 5\n")
    cfg = load(env={"PRTS_WEB_THREADS": "9"}, files=[system, user])
    assert cfg.web.listen == "0.0.0.0:1"  # only the system file set it
    assert cfg.web.workers == 5  # the later file wins over the earlier
    assert cfg.web.threads == 9  # the environment wins over files
    assert cfg.sources["web.threads"] == "PRTS_WEB_THREADS"
    assert cfg.sources["web.workers"] == str(user)


def test_prts_config_names_the_file(tmp_path):
    user = write(tmp_path / "prts.toml", 'data_dir = "/srv/prts"\n')
    cfg = load(env={"PRTS_CONFIG": str(user)})
    assert cfg.data_dir == "/srv/prts"


def test_secret_from_file_in_toml_and_env(tmp_path):
    secret = write(tmp_path / "s3-secret", "hunter2-but-longer\n")
    toml = write(tmp_path / "c.toml", f'[objects]\nsecret_key_file = "{secret}"\n')
    assert load(env={}, files=[toml]).objects.secret_key == "hunter2-but-longer"
    other = write(tmp_path / "other", "from-env-file")
    cfg = load(env={"PRTS_OBJECTS_SECRET_KEY_FILE": str(other)}, files=[toml])
    assert cfg.objects.secret_key == "from-env-file"
    assert "PRTS_OBJECTS_SECRET_KEY_FILE" in cfg.sources["objects.secret_key"]


def test_missing_secret_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"web.secret_key_file .*cannot read .*nope"):
        load(env={"PRTS_WEB_SECRET_KEY_FILE": str(tmp_path / "nope")}, files=[])


def test_file_variant_only_for_secrets(tmp_path):
    cfg = load(env={"PRTS_WEB_LISTEN_FILE": "/x"}, files=[])
    assert any("PRTS_WEB_LISTEN_FILE" in w for w in cfg.warnings)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PRTS_WEB_WORKERS": "many"}, r"web.workers \(PRTS_WEB_WORKERS\): expected integer, got 'many'"),
        ({"PRTS_WEB_WORKERS": "0"}, r"web.workers .*expected integer >= 1"),
        ({"PRTS_OBJECTS_SECURE": "perhaps"}, r"objects.secure .*expected boolean"),
        ({"PRTS_WEB_LISTEN": "8080"}, r"web.listen .*expected host:port"),
        ({"PRTS_QUEUE_BACKEND": "kafka"}, r"queue.backend .*expected one of sqlite, redis, got 'kafka'"),
        ({"PRTS_QUEUE_BACKEND": "redis"}, r"queue.url is required when queue.backend = 'redis'"),
        ({"PRTS_OBJECTS_BACKEND": "s3"}, r"objects.endpoint is required when objects.backend = 's3'"),
        ({"PRTS_ANALYTICS_BACKEND": "clickhouse"}, r"analytics.host is required"),
    ],
)
def test_bad_values_fail_with_key_and_type(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env, files=[])


def test_wrong_type_in_toml_names_file(tmp_path):
    toml = write(tmp_path / "c.toml", '[web]\nworkers = "two"\n')
    with pytest.raises(ConfigError, match=rf"web.workers \({tmp_path}/c.toml\): expected integer"):
        load(env={}, files=[toml])


def test_malformed_toml_is_an_error(tmp_path):
    toml = write(tmp_path / "c.toml", "[web\nlisten=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(env={}, files=[toml])


def test_secret_value_never_echoed_in_errors():
    with pytest.raises(ConfigError) as info:
        load(env={"PRTS_WEB_SECRET_KEY": "x", "PRTS_WEB_WORKERS": "1"}, files=[], overrides={"web.secret_key": 12345})
    assert "12345" not in str(info.value) and REDACTED in str(info.value)


def test_unknown_keys_warn(tmp_path):
    toml = write(tmp_path / "c.toml", "[web]\nlisen = 1\n[nonsense]\nx = 1\n")
    cfg = load(env={"PRTS_WEB_LISEN": "x", "PRTS_CONFIG": "ignored-here", "OTHER": "1"}, files=[toml])
    joined = "\n".join(cfg.warnings)
    assert "'web.lisen'" in joined and "'nonsense.x'" in joined and "PRTS_WEB_LISEN" in joined
    assert "PRTS_CONFIG" not in joined and "OTHER" not in joined


def test_redacted_hides_every_secret():
    env = {
        "PRTS_WEB_SECRET_KEY": "sk-secret-value",
        "PRTS_OBJECTS_ACCESS_KEY": "access-value",
        "PRTS_OBJECTS_SECRET_KEY": "secret-value",
        "PRTS_ANALYTICS_PASSWORD": "ch-password",
        "PRTS_DATABASE_URL": "postgresql://app:pg-password@db.example:5432/prts",
        "PRTS_QUEUE_BACKEND": "redis",
        "PRTS_QUEUE_URL": "redis://:redis-password@cache:6379/0",
    }
    shown = repr(load(env=env, files=[]).redacted())
    for value in ("sk-secret-value", "access-value", "secret-value", "ch-password", "pg-password", "redis-password"):
        assert value not in shown
    assert "postgresql+psycopg://app:********@db.example:5432/prts" in shown


def test_every_setting_is_documented_and_env_names_are_unique():
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert all(s.doc for s in SETTINGS)
    assert BY_KEY["web.listen"].env == "PRTS_WEB_LISTEN"
    assert BY_KEY["data_dir"].env == "PRTS_DATA_DIR"


def test_secure_cookie_follows_public_url():
    assert load(env={"PRTS_WEB_PUBLIC_URL": "https://ci.example"}, files=[]).session_cookie_secure
    assert not load(env={"PRTS_WEB_PUBLIC_URL": "http://ci.example"}, files=[]).session_cookie_secure


def test_every_setting_is_in_the_configuration_docs():
    docs = (pathlib.Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [s.key for s in SETTINGS if f"| `{s.key}` | `{s.env}` |" not in docs]
    assert missing == [], f"document these keys in docs/configuration.md: {missing}"
