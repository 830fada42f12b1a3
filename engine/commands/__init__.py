"""One module per user action. Each holds:

- `Params`: a frozen dataclass of what the action needs (ids, fields);
- `validate(...) -> list[Reason]`: the pure canDo step, given already-loaded rows; returns every
  failing reason, never raises;
- `execute(sessions, hosts, params) -> Outcome`: loads rows, validates (raising ValidationFailed with all
  reasons), runs the plug state machine with compare-and-set transitions committed before any host call,
  calls the host through the HostClient Protocol, commits the result, and writes audit events.

`sessions` is a sessionmaker: commands that call a host need short transactions of their own (the
transition must be committed before the call), so they take the factory rather than a session.

Modules: add_cluster, add_host, refresh_host, add_vm, remove_vm, run_vm, stop_vm, add_nic, update_nic,
remove_nic, plug_unplug_nic. Shared pieces: `outcome.Outcome` (id, pending, created), `reasons` (every
canDo code, declared once), `common` (status sets, the NIC dictionary sent to the agent, the live
plug/unplug state machine).

Refusals: a canDo failure raises ValidationFailed with every reason -- or Conflict (OPERATION_IN_FLIGHT)
when one of them is DEVICE_IN_FLIGHT, the same answer a lost compare-and-set gets. Unknown ids in the
path (VM, NIC, host to refresh) raise NotFound; unknown ids in the body (cluster, host to run on) are
reasons. Every success and every refusal or host failure writes an audit event; a refusal's event is
written in its own transaction (the action's was rolled back). An unreachable host leaves the rows as
they were and records HOST_UNREACHABLE.
"""
