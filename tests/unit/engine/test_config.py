from pathlib import Path

import pytest

from engine.config import ConfigError, EngineConfig, TlsSettings, load


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "engine.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_file_or_env():
    cfg = load(env={})
    assert cfg == EngineConfig()
    assert cfg.state_dir == Path("/var/lib/plugboard")
    assert cfg.db_url == "sqlite:////var/lib/plugboard/engine.db"
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8080)
    assert cfg.listen == "127.0.0.1:8080"
    assert (cfg.mac_pool_start, cfg.mac_pool_end) == ("56:6f:1a:00:00:00", "56:6f:1a:00:ff:ff")
    assert (cfg.host_timeout, cfg.host_connect_timeout) == (30.0, 5.0)
    assert cfg.tls == TlsSettings()
    assert (cfg.poll_timeout, cfg.reconcile_interval) == (10.0, 60.0)


def test_state_dir_from_env_moves_the_default_database(tmp_path):
    cfg = load(env={"PLUGBOARD_STATE_DIR": str(tmp_path)})
    assert cfg.state_dir == tmp_path
    assert cfg.db_url == f"sqlite:///{tmp_path}/engine.db"


def test_file_values(tmp_path):
    for name in ("ca.pem", "engine.pem", "engine.key"):
        (tmp_path / name).write_text("x")
    path = write(tmp_path, f"""
[engine]
state_dir = "{tmp_path}"
db_url = "postgresql+psycopg://plugboard@db/plugboard"
listen = "0.0.0.0:9090"
unplug_wait = 20

[mac_pool]
start = "56:6F:1A:01:00:00"
end = "56:6f:1a:01:00:ff"

[hosts]
timeout = 45
connect_timeout = 2.5

[tls]
ca = "{tmp_path}/ca.pem"
cert = "{tmp_path}/engine.pem"
key = "{tmp_path}/engine.key"

[monitor]
poll_timeout = 20
reconcile_interval = 30
stale_after = 600
""")
    cfg = load(path, env={})
    assert cfg.db_url == "postgresql+psycopg://plugboard@db/plugboard"
    assert (cfg.listen_host, cfg.listen_port) == ("0.0.0.0", 9090)
    assert cfg.mac_pool_start == "56:6f:1a:01:00:00"  # normalised to lower case
    assert cfg.mac_pool_end == "56:6f:1a:01:00:ff"
    assert (cfg.host_timeout, cfg.host_connect_timeout) == (45.0, 2.5)
    assert cfg.tls == TlsSettings(ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "engine.pem",
                                  key_file=tmp_path / "engine.key", verify=True)
    assert (cfg.poll_timeout, cfg.reconcile_interval, cfg.stale_after, cfg.unplug_wait) == (20, 30, 600, 20)


def test_env_overrides_file(tmp_path):
    path = write(tmp_path, '[engine]\nlisten = "127.0.0.1:8000"\ndb_url = "sqlite:///a.db"\n'
                           '[hosts]\ntimeout = 10\n[tls]\nverify = true\n')
    cfg = load(path, env={"PLUGBOARD_LISTEN": "[::1]:8181", "PLUGBOARD_DB_URL": "sqlite:///b.db",
                          "PLUGBOARD_HOST_TIMEOUT": "12.5", "PLUGBOARD_TLS_VERIFY": "no",
                          "PLUGBOARD_RECONCILE_INTERVAL": "5"})
    assert (cfg.listen_host, cfg.listen_port) == ("::1", 8181)
    assert cfg.db_url == "sqlite:///b.db"
    assert cfg.host_timeout == 12.5
    assert cfg.tls.verify is False
    assert cfg.reconcile_interval == 5


def test_config_path_from_env(tmp_path):
    path = write(tmp_path, '[engine]\nlisten = "127.0.0.1:8001"\n')
    assert load(env={"PLUGBOARD_CONFIG": str(path)}).listen_port == 8001


def test_empty_env_value_is_ignored():
    assert load(env={"PLUGBOARD_LISTEN": ""}).listen_port == 8080


@pytest.mark.parametrize("text, key", [
    ('[engine]\nlisten = "localhost"\n', "engine.listen"),
    ('[engine]\nlisten = "localhost:99999"\n', "engine.listen"),
    ('[engine]\ndb_url = "engine.db"\n', "engine.db_url"),
    ('[engine]\nunplug_wait = 0\n', "engine.unplug_wait"),
    ('[hosts]\ntimeout = -1\n', "hosts.timeout"),
    ('[hosts]\ntimeout = "soon"\n', "hosts.timeout"),
    ('[hosts]\nconnect_timeout = true\n', "hosts.connect_timeout"),
    ('[mac_pool]\nstart = "56:6f:1a:00:00"\n', "mac_pool.start"),
    ('[mac_pool]\nstart = "57:6f:1a:00:00:00"\n', "mac_pool.start"),   # multicast
    ('[mac_pool]\nstart = "56:6f:1a:00:ff:00"\nend = "56:6f:1a:00:00:00"\n', "mac_pool.end"),
    ('[monitor]\npoll_timeout = 61\n', "monitor.poll_timeout"),
    ('[monitor]\nstale_after = 5\n', "monitor.stale_after"),          # shorter than unplug_wait
    ('[tls]\nverify = "maybe"\n', "tls.verify"),
    ('[tls]\nca = "/nonexistent/ca.pem"\n', "tls.ca"),
    ('[engine]\nlisten_port = 8080\n', "engine.listen_port"),          # unknown key
    ('[database]\nurl = "x"\n', "database"),                           # unknown section
    ('engine = 3\n', "engine"),
])
def test_bad_file_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text), env={})
    assert e.value.key == key
    assert str(e.value).startswith(key)


def test_client_cert_without_key(tmp_path):
    (tmp_path / "engine.pem").write_text("x")
    with pytest.raises(ConfigError, match="tls.cert and tls.key go together") as e:
        load(write(tmp_path, f'[tls]\ncert = "{tmp_path}/engine.pem"\n'), env={})
    assert e.value.key == "tls.key"


def test_bad_env_value_names_key_and_variable():
    with pytest.raises(ConfigError) as e:
        load(env={"PLUGBOARD_POLL_TIMEOUT": "ten"})
    assert e.value.key == "monitor.poll_timeout"
    assert "$PLUGBOARD_POLL_TIMEOUT" in str(e.value)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(write(tmp_path, "[engine\n"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml", env={})


def test_server_processes_default_to_one_on_sqlite_and_the_cpus_on_postgresql():
    import os
    assert load(None, env={}).workers == 1
    pg = load(None, env={"PLUGBOARD_DB_URL": "postgresql+psycopg://u@db/plugboard"})
    assert pg.workers == len(os.sched_getaffinity(0))
    assert (pg.threads, pg.request_timeout) == (8, 120.0)
    tuned = load(None, env={"PLUGBOARD_DB_URL": "postgresql+psycopg://u@db/plugboard", "PLUGBOARD_WORKERS": "6",
                            "PLUGBOARD_THREADS": "4", "PLUGBOARD_REQUEST_TIMEOUT": "30"})
    assert (tuned.workers, tuned.threads, tuned.request_timeout) == (6, 4, 30.0)
    assert pg.reuse_port is True
    assert load(None, env={"PLUGBOARD_REUSE_PORT": "no"}).reuse_port is False


def test_the_monitor_runs_in_a_process_of_its_own_on_postgresql_and_in_the_one_worker_on_sqlite():
    pg = "postgresql+psycopg://u@db/plugboard"
    assert load(None, env={"PLUGBOARD_DB_URL": pg}).monitor_own_process is True
    assert load(None, env={}).monitor_own_process is False
    assert load(None, env={"PLUGBOARD_DB_URL": pg, "PLUGBOARD_MONITOR_OWN_PROCESS": "false"}).monitor_own_process \
        is False


@pytest.mark.parametrize("env, key", [
    ({"PLUGBOARD_WORKERS": "2"}, "engine.workers"),         # SQLite: one writer, one process
    ({"PLUGBOARD_WORKERS": "0", "PLUGBOARD_DB_URL": "postgresql+psycopg://u@db/p"}, "engine.workers"),
    ({"PLUGBOARD_WORKERS": "1.5", "PLUGBOARD_DB_URL": "postgresql+psycopg://u@db/p"}, "engine.workers"),
    ({"PLUGBOARD_THREADS": "0"}, "engine.threads"),
    ({"PLUGBOARD_THREADS": "1000"}, "engine.threads"),
    ({"PLUGBOARD_REQUEST_TIMEOUT": "-1"}, "engine.request_timeout"),
    ({"PLUGBOARD_REUSE_PORT": "sometimes"}, "engine.reuse_port"),
    ({"PLUGBOARD_MONITOR_OWN_PROCESS": "yes"}, "monitor.own_process"),     # SQLite: a second writer
    ({"PLUGBOARD_MONITOR_OWN_PROCESS": "maybe", "PLUGBOARD_DB_URL": "postgresql+psycopg://u@db/p"},
     "monitor.own_process"),
])
def test_bad_server_settings_name_the_key(env, key):
    with pytest.raises(ConfigError) as e:
        load(None, env=env)
    assert e.value.key == key
