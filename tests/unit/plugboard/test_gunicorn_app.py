"""The gunicorn settings `plugboard engine serve` runs with, read from the engine's configuration."""
from __future__ import annotations

import socket

import pytest

from engine.config import ConfigError, load
from plugboard import gunicorn_app
from plugboard.gunicorn_app import EngineServer, MonitorProcess, check_port_free, own_sockets

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
        app = EngineServer(cfg, monitor=None).load()
        assert app is not None
        # the app, its mappers and modules: a full collection no longer walks them while requests wait
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def _reaped(process: MonitorProcess) -> None:
    import time
    deadline = time.monotonic() + 10
    while process.pid is not None:
        assert time.monotonic() < deadline, "the monitor process did not end"
        process.reap()
        time.sleep(0.01)


def test_a_monitor_process_that_dies_young_is_forked_again_only_after_a_pause(monkeypatch, caplog):
    """A monitor that cannot start (it fails at once) must not make the arbiter fork in a loop."""
    def failing(_arbiter, _cfg):
        raise RuntimeError("cannot start")
    monkeypatch.setattr(gunicorn_app, "_watch", failing)
    process = MonitorProcess(cfg=None)
    process.keep_alive(arbiter=None)
    first = process.pid
    assert first is not None
    _reaped(process)
    assert f"monitor process {first} exited with code 1; another one takes its place" in caplog.text

    process.keep_alive(arbiter=None)            # it lived less than RESPAWN_AFTER: not yet
    assert process.pid is None
    process.started -= MonitorProcess.RESPAWN_AFTER
    process.keep_alive(arbiter=None)
    assert process.pid not in (None, first)
    _reaped(process)


def test_a_replaced_monitor_process_is_followed_at_once_and_a_stopping_one_by_none(monkeypatch, caplog):
    import signal
    import threading

    def waits_for_term(_arbiter, _cfg):
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, gunicorn_app.STOP_SIGNALS)   # as _watch does
        done.wait(30)
    monkeypatch.setattr(gunicorn_app, "_watch", waits_for_term)
    caplog.set_level("INFO", logger="plugboard.engine")
    process = MonitorProcess(cfg=None)
    process.keep_alive(arbiter=None)
    first = process.pid
    process.replace()                           # SIGHUP: SIGTERM, and the next one as soon as it is gone
    _reaped(process)
    assert f"monitor process {first} " in caplog.text and "takes its place" not in caplog.text
    process.keep_alive(arbiter=None)
    second = process.pid
    assert second not in (None, first)

    process.stopping = True                     # the arbiter stops: SIGTERM, wait, no successor
    process.signal(signal.SIGTERM)
    process.wait(10)
    assert process.pid is None
    process.keep_alive(arbiter=None)
    assert process.pid is None


def test_the_monitor_process_stops_when_its_arbiter_is_gone():
    import os
    import threading
    stop = threading.Event()
    watcher = threading.Thread(target=gunicorn_app._end_with_parent, args=(os.getppid(), stop, 0.01))
    watcher.start()
    watcher.join(0.1)
    assert watcher.is_alive() and not stop.is_set()     # its parent is there: it keeps watching
    stop.set()
    watcher.join(5)

    orphaned = threading.Event()                        # a parent pid that is not ours: the arbiter died
    gunicorn_app._end_with_parent(os.getppid() + 1, orphaned, every=0.01)
    assert orphaned.is_set()


def test_a_stop_signal_is_written_to_the_pipe_the_monitor_waits_on(monkeypatch):
    """A monitor process waits on a pipe that SIGTERM, SIGINT and SIGQUIT write to: no handler sets a
    threading.Event, which could deadlock on the lock of the Event.wait it interrupted."""
    import os
    import signal

    from plugboard.engine_main import StopSignals
    saved = {sig: signal.getsignal(sig) for sig in StopSignals.SIGNALS}
    try:
        stop = StopSignals()
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        stop.wait()                                     # returns: the handler wrote its byte
        assert stop.is_set()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_stop_sent_before_the_monitor_process_has_its_handlers_waits_for_them(monkeypatch, caplog):
    """SIGTERM right after the fork reaches the child's own handler, not the arbiter's inherited one."""
    import signal
    import threading
    import time

    def slow_to_listen(_arbiter, _cfg):
        time.sleep(0.3)                                 # building its parts
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, gunicorn_app.STOP_SIGNALS)
        if not done.wait(10):
            raise SystemExit(3)
    monkeypatch.setattr(gunicorn_app, "_watch", slow_to_listen)
    caplog.set_level("INFO", logger="plugboard.engine")
    process = MonitorProcess(cfg=None)
    process.keep_alive(arbiter=None)
    pid = process.pid
    process.stopping = True
    process.signal(signal.SIGTERM)
    process.wait(10)
    assert f"monitor process {pid} exited with code 0" in caplog.text


def test_a_monitor_stopped_while_it_was_built_never_takes_the_lease(monkeypatch):
    import threading

    from plugboard import engine_main

    class Runner:
        startup = True
        started = False

        def start(self):
            self.started = True

        def stop(self, timeout=None):
            pass

    runner = Runner()
    monkeypatch.setattr(engine_main, "_watching", lambda cfg: (None, None, None))
    monkeypatch.setattr(engine_main, "standby", lambda mon, cfg: runner)
    monkeypatch.setattr(engine_main, "settle_heap", lambda: None)
    stop = threading.Event()
    stop.set()
    engine_main.watch_until(cfg=None, stop=stop)
    assert not runner.started
