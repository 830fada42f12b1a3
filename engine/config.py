"""The engine's settings: a TOML file, then environment variables on top, then validation.

File layout (every key optional)::

    [engine]
    state_dir = "/var/lib/plugboard"          # $PLUGBOARD_STATE_DIR
    db_url = "sqlite:////var/lib/plugboard/engine.db"   # $PLUGBOARD_DB_URL
    listen = "127.0.0.1:8080"                 # $PLUGBOARD_LISTEN
    unplug_wait = 15                          # $PLUGBOARD_UNPLUG_WAIT
    workers = 2                               # $PLUGBOARD_WORKERS: server processes (default: 1 on
                                              #   SQLite, which allows no more; the CPU count on PostgreSQL)
    threads = 8                               # $PLUGBOARD_THREADS: requests each worker serves at once
    request_timeout = 120                     # $PLUGBOARD_REQUEST_TIMEOUT: a worker silent this long is replaced
    reuse_port = true                         # $PLUGBOARD_REUSE_PORT: with more than one worker, each listens on
                                              #   a socket of its own (SO_REUSEPORT) and the kernel spreads
                                              #   the connections evenly (see plugboard/gunicorn_app.py)

    [mac_pool]
    start = "56:6f:1a:00:00:00"               # $PLUGBOARD_MAC_POOL_START
    end = "56:6f:1a:00:ff:ff"                 # $PLUGBOARD_MAC_POOL_END

    [hosts]
    timeout = 30                              # $PLUGBOARD_HOST_TIMEOUT
    connect_timeout = 5                       # $PLUGBOARD_HOST_CONNECT_TIMEOUT

    [tls]                                     # client side of the engine -> agent connection
    ca = "/etc/pki/plugboard/ca.pem"          # $PLUGBOARD_TLS_CA
    cert = "/etc/pki/plugboard/engine.pem"    # $PLUGBOARD_TLS_CERT
    key = "/etc/pki/plugboard/engine.key"     # $PLUGBOARD_TLS_KEY
    verify = true                             # $PLUGBOARD_TLS_VERIFY

    [monitor]
    poll_timeout = 10                         # $PLUGBOARD_POLL_TIMEOUT
    reconcile_interval = 60                   # $PLUGBOARD_RECONCILE_INTERVAL
    stale_after = 300                         # $PLUGBOARD_STALE_AFTER
    own_process = true                        # $PLUGBOARD_MONITOR_OWN_PROCESS: `serve` runs the monitor in a
                                              #   process of its own beside the workers (default on
                                              #   PostgreSQL); false: the workers stand for it (SQLite)

    [pci]                                     # PCI passthrough by alias (seed 003's pci_alias)
    alias = ['{"vendor_id": "8086", "product_id": "10c9", "name": "a1"}']   # $PLUGBOARD_PCI_ALIAS (JSON)
    pcie_ports = 4                            # $PLUGBOARD_PCIE_PORTS: spare q35 root ports per VM

The file is read from the path given to `load`, else from $PLUGBOARD_CONFIG when set; without either
the defaults run a single engine on one machine. Every bad value raises ConfigError naming its key
(and the environment variable when the value came from there).
"""
from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.pci_aliases import Alias, parse_aliases

DEFAULT_STATE_DIR = Path("/var/lib/plugboard")
ENV_PREFIX = "PLUGBOARD_"
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
# The agent refuses a Host.getEvents long-poll longer than this (schema/verbs.yaml).
MAX_POLL_TIMEOUT = 60.0
# schema/verbs.yaml vmParams.pciePorts.
MAX_PCIE_PORTS = 30


class ConfigError(ValueError):
    """A bad setting. `key` is the dotted name of the setting (e.g. "hosts.timeout")."""

    def __init__(self, key: str, problem: str, *, source: str | None = None) -> None:
        self.key = key
        self.source = source
        where = f"{key} (from {source})" if source else key
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class TlsSettings:
    """How the engine connects to agents over HTTPS.

    `ca_file`: the CA bundle that signed the agents' certificates (None: the system store);
    `cert_file` + `key_file`: the engine's client certificate, for agents that require mutual TLS;
    `verify`: False disables server verification (for a lab only).
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    verify: bool = True


@dataclass(frozen=True)
class EngineConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    db_url: str = f"sqlite:///{DEFAULT_STATE_DIR}/engine.db"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    mac_pool_start: str = "56:6f:1a:00:00:00"
    mac_pool_end: str = "56:6f:1a:00:ff:ff"
    host_timeout: float = 30.0            # seconds a host call may take (read timeout)
    host_connect_timeout: float = 5.0     # seconds to open the connection to an agent
    tls: TlsSettings = field(default_factory=TlsSettings)
    poll_timeout: float = 10.0            # Host.getEvents long-poll
    reconcile_interval: float = 60.0      # seconds between two reconciliations of every host
    stale_after: float = 300.0            # an unplug still in flight after this long is given up
    unplug_wait: float = 15.0             # how long a hot-unplug command waits for the agent's answer
    pci_aliases: tuple[Alias, ...] = ()   # several may share a name: it then means any of them
    pcie_ports: int = 4                   # spare q35 root ports a VM gets for hot-plug, unless it says
    workers: int = 1                      # server processes of `plugboard engine serve`
    threads: int = 8                      # requests one worker serves at once
    request_timeout: float = 120.0        # a worker that has not answered its server for this long is replaced
    reuse_port: bool = True               # several workers: a listening socket each (SO_REUSEPORT)
    monitor_own_process: bool = False     # `serve`: the monitor in a process of its own, not in the workers

    @property
    def listen(self) -> str:
        """HOST:PORT as a server binds it: an IPv6 address in brackets."""
        host = f"[{self.listen_host}]" if ":" in self.listen_host else self.listen_host
        return f"{host}:{self.listen_port}"


# ---- value parsers: each takes the raw value (TOML value or environment string) and returns the
# ---- typed value or raises ValueError with the problem.

def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _path(value: Any) -> Path:
    return Path(_str(value)).expanduser()


def _existing_file(value: Any) -> Path:
    path = _path(value)
    if not path.is_file():
        raise ValueError(f"no such file: {str(path)!r}")
    return path


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return number


def _poll_timeout(value: Any) -> float:
    number = _positive(value)
    if number > MAX_POLL_TIMEOUT:
        raise ValueError(f"expected at most {MAX_POLL_TIMEOUT:g} seconds (the agent's limit), got {value!r}")
    return number


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _mac(value: Any) -> str:
    mac = _str(value).lower()
    if not _MAC.match(mac):
        raise ValueError(f"expected a MAC address like 56:6f:1a:00:00:00, got {value!r}")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"{mac} is a multicast address; a NIC needs a unicast one")
    return mac


def _db_url(value: Any) -> str:
    url = _str(value)
    scheme, sep, _rest = url.partition("://")
    if not sep or not re.match(r"^[a-z][a-z0-9+]*$", scheme):
        raise ValueError(f"expected a database URL such as sqlite:////path/engine.db or "
                         f"postgresql+psycopg://user@host/db, got {value!r}")
    return url


def _listen(value: Any) -> tuple[str, int]:
    text = _str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with a port in 1-65535, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _pcie_ports(value: Any) -> int:
    number = _number(value)
    if number != int(number) or not 0 <= number <= MAX_PCIE_PORTS:
        raise ValueError(f"expected a whole number from 0 to {MAX_PCIE_PORTS}, got {value!r}")
    return int(number)


def _count(limit: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _number(value)
        if number != int(number) or not 1 <= number <= limit:
            raise ValueError(f"expected a whole number from 1 to {limit}, got {value!r}")
        return int(number)
    return parse


MAX_WORKERS = 64
MAX_THREADS = 256


def default_workers(db_url: str) -> int:
    """One per CPU this process may run on (gunicorn's threaded workers each serve `threads` requests
    at once); one on SQLite."""
    if db_url.startswith("sqlite"):
        return 1
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@dataclass(frozen=True)
class _Key:
    section: str
    name: str
    parse: Callable[[Any], Any]
    env: str

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


_KEYS = [
    _Key("engine", "state_dir", _path, "STATE_DIR"),
    _Key("engine", "db_url", _db_url, "DB_URL"),
    _Key("engine", "listen", _listen, "LISTEN"),
    _Key("engine", "unplug_wait", _positive, "UNPLUG_WAIT"),
    _Key("engine", "workers", _count(MAX_WORKERS), "WORKERS"),
    _Key("engine", "threads", _count(MAX_THREADS), "THREADS"),
    _Key("engine", "request_timeout", _positive, "REQUEST_TIMEOUT"),
    _Key("engine", "reuse_port", _bool, "REUSE_PORT"),
    _Key("mac_pool", "start", _mac, "MAC_POOL_START"),
    _Key("mac_pool", "end", _mac, "MAC_POOL_END"),
    _Key("hosts", "timeout", _positive, "HOST_TIMEOUT"),
    _Key("hosts", "connect_timeout", _positive, "HOST_CONNECT_TIMEOUT"),
    _Key("tls", "ca", _existing_file, "TLS_CA"),
    _Key("tls", "cert", _existing_file, "TLS_CERT"),
    _Key("tls", "key", _existing_file, "TLS_KEY"),
    _Key("tls", "verify", _bool, "TLS_VERIFY"),
    _Key("monitor", "poll_timeout", _poll_timeout, "POLL_TIMEOUT"),
    _Key("monitor", "reconcile_interval", _positive, "RECONCILE_INTERVAL"),
    _Key("monitor", "stale_after", _positive, "STALE_AFTER"),
    _Key("monitor", "own_process", _bool, "MONITOR_OWN_PROCESS"),
    _Key("pci", "alias", parse_aliases, "PCI_ALIAS"),
    _Key("pci", "pcie_ports", _pcie_ports, "PCIE_PORTS"),
]
_SECTIONS = {k.section for k in _KEYS}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError("config file", f"cannot read {str(path)!r}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config file", f"{str(path)!r} is not valid TOML: {e}") from e
    for section, body in data.items():
        if section not in _SECTIONS:
            raise ConfigError(section, f"unknown section in {str(path)!r} "
                              f"(known: {', '.join(sorted(_SECTIONS))})")
        if not isinstance(body, dict):
            raise ConfigError(section, "expected a [section] table")
        known = {k.name for k in _KEYS if k.section == section}
        for name in body:
            if name not in known:
                raise ConfigError(f"{section}.{name}", f"unknown key (known in [{section}]: "
                                  f"{', '.join(sorted(known))})")
    return data


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> EngineConfig:
    """Read the TOML file (`path`, else $PLUGBOARD_CONFIG, else none), apply the PLUGBOARD_*
    environment overrides, validate, and return the settings."""
    env = os.environ if env is None else env
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    data = _read_file(Path(path)) if path is not None else {}

    values: dict[str, Any] = {}
    for key in _KEYS:
        env_name = ENV_PREFIX + key.env
        if env.get(env_name, "") != "":
            raw, source = env[env_name], f"${env_name}"
        elif key.name in data.get(key.section, {}):
            raw, source = data[key.section][key.name], None
        else:
            continue
        try:
            values[key.dotted] = key.parse(raw)
        except ValueError as e:
            raise ConfigError(key.dotted, str(e), source=source) from None

    state_dir = values.get("engine.state_dir", DEFAULT_STATE_DIR)
    db_url = values.get("engine.db_url", f"sqlite:///{state_dir}/engine.db")
    listen_host, listen_port = values.get("engine.listen", ("127.0.0.1", 8080))

    mac_start = values.get("mac_pool.start", EngineConfig.mac_pool_start)
    mac_end = values.get("mac_pool.end", EngineConfig.mac_pool_end)
    if int(mac_start.replace(":", ""), 16) > int(mac_end.replace(":", ""), 16):
        raise ConfigError("mac_pool.end", f"the range is empty: end {mac_end} is before start {mac_start}")

    cert, key_file = values.get("tls.cert"), values.get("tls.key")
    if (cert is None) != (key_file is None):
        raise ConfigError("tls.key" if key_file is None else "tls.cert",
                          "tls.cert and tls.key go together (client certificate and its private key)")
    tls = TlsSettings(ca_file=values.get("tls.ca"), cert_file=cert, key_file=key_file,
                      verify=values.get("tls.verify", True))

    host_timeout = values.get("hosts.timeout", EngineConfig.host_timeout)
    unplug_wait = values.get("engine.unplug_wait", EngineConfig.unplug_wait)
    reconcile_interval = values.get("monitor.reconcile_interval", EngineConfig.reconcile_interval)
    stale_after = values.get("monitor.stale_after", EngineConfig.stale_after)
    if stale_after < unplug_wait:
        raise ConfigError("monitor.stale_after", f"must be at least engine.unplug_wait ({unplug_wait:g} s): "
                          f"an unplug cannot be given up before its command has stopped waiting")

    workers = values.get("engine.workers", default_workers(db_url))
    if workers > 1 and db_url.startswith("sqlite"):
        raise ConfigError("engine.workers", f"{workers} workers need PostgreSQL: SQLite has one writer, so an "
                          "engine on SQLite is one process (set workers = 1, or db_url to a PostgreSQL database)")
    # The monitor's own process is a second writer: on SQLite the one worker watches the hosts.
    own_process = values.get("monitor.own_process", not db_url.startswith("sqlite"))
    if own_process and db_url.startswith("sqlite"):
        raise ConfigError("monitor.own_process", "a monitor process of its own needs PostgreSQL: an engine on "
                          "SQLite is one process, whose worker watches the hosts (set own_process = false)")

    return EngineConfig(
        state_dir=state_dir,
        db_url=db_url,
        listen_host=listen_host,
        listen_port=listen_port,
        mac_pool_start=mac_start,
        mac_pool_end=mac_end,
        host_timeout=host_timeout,
        host_connect_timeout=values.get("hosts.connect_timeout", EngineConfig.host_connect_timeout),
        tls=tls,
        poll_timeout=values.get("monitor.poll_timeout", EngineConfig.poll_timeout),
        reconcile_interval=reconcile_interval,
        stale_after=stale_after,
        unplug_wait=unplug_wait,
        pci_aliases=values.get("pci.alias", ()),
        pcie_ports=values.get("pci.pcie_ports", EngineConfig.pcie_ports),
        workers=workers,
        threads=values.get("engine.threads", EngineConfig.threads),
        request_timeout=values.get("engine.request_timeout", EngineConfig.request_timeout),
        reuse_port=values.get("engine.reuse_port", EngineConfig.reuse_port),
        monitor_own_process=own_process,
    )
