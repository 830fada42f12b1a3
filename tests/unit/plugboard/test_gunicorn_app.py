"""The gunicorn settings `plugboard engine serve` runs with, read from the engine's configuration."""
from __future__ import annotations

import socket

import pytest

from engine.config import ConfigError, load
from plugboard.gunicorn_app import EngineServer, check_port_free, own_sockets

PG = "postgresql+psycopg://u@db/plugboard"


@pytest.mark.parametrize("env, own", [
    ({"PLUGBOARD_DB_URL": PG, "PLUGBOARD_WORKERS": "2"}, True),
    ({"PLUGBOARD_DB_URL": PG, "PLUGBOARD_WORKERS": "2", "PLUGBOARD_REUSE_PORT": "false"}, False),
    ({"PLUGBOARD_DB_URL": PG, "PLUGBOARD_WORKERS": "1"}, False),     # one worker: nothing to spread
    ({}, False),                                                       # SQLite: one worker
])
def test_several_workers_listen_on_a_socket_each_unless_told_not_to(env, own):
    cfg = load(None, env=env)
    assert own_sockets(cfg) is own
    assert EngineServer(cfg).cfg.reuse_port is own


def test_an_ipv6_listening_address_is_bound_in_brackets():
    cfg = load(None, env={"PLUGBOARD_LISTEN": "[::1]:8181"})
    assert (cfg.listen_host, cfg.listen_port, cfg.listen) == ("::1", 8181, "[::1]:8181")
    assert EngineServer(cfg).cfg.bind == ["[::1]:8181"]


def test_a_port_another_server_listens_on_is_refused_even_when_it_shares_it():
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)     # as a worker's socket is
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ConfigError) as e:
            check_port_free("127.0.0.1", port)
        assert e.value.key == "engine.listen"
        assert "something else listens there" in str(e.value)
    check_port_free("127.0.0.1", port)      # free again


def test_a_worker_freezes_what_it_built_so_full_collections_skip_it(tmp_path):
    import gc
    cfg = load(None, env={"PLUGBOARD_STATE_DIR": str(tmp_path), "PLUGBOARD_DB_URL": f"sqlite:///{tmp_path}/e.db"})
    gc.unfreeze()
    try:
        app = EngineServer(cfg, monitor=False).load()
        assert app is not None
        # the app, its mappers and modules: a full collection no longer walks them while requests wait
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
