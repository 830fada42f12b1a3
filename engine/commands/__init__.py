"""One module per user action. Each holds:

- `Params`: a frozen dataclass of what the action needs (ids, fields);
- `validate(...) -> list[Reason]`: the pure canDo step, given already-loaded rows; returns every
  failing reason, never raises;
- `execute(sessions, hosts, params) -> Outcome`: loads rows, validates (raising ValidationFailed with all
  reasons), runs the plug state machine with compare-and-set transitions committed before any host call,
  calls the host through the HostClient Protocol, commits the result, and writes audit events.

`sessions` is a sessionmaker: commands that call a host need short transactions of their own (the
transition must be committed before the call), so they take the factory rather than a session.
"""
