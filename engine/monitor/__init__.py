"""The engine's view of its hosts: `events` (applying the agents' journal events), `reconcile`
(bringing rows to a host's truth), `runner` (the Monitor: threads, reachability)."""
from engine.monitor.runner import Monitor

__all__ = ["Monitor"]
