"""The agent's one error type. Every failure carries a name from schema/errors.yaml; the server maps
it to a JSON-RPC error (code, message, data) in one place."""
from __future__ import annotations

from typing import Any

from vdsm_plugin import contract


class AgentError(Exception):
    """A coded failure. `name` is a key of schema/errors.yaml; `detail` says what happened."""

    def __init__(self, name: str, detail: str = "", **data: Any) -> None:
        table = contract.errors()
        if name not in table:
            raise KeyError(f"unknown agent error name {name!r}")
        self.name = name
        self.code: int = table[name]["code"]
        self.message: str = table[name]["message"]
        self.detail = detail
        self.data = data
        super().__init__(f"{self.message}: {detail}" if detail else self.message)

    def to_jsonrpc(self) -> dict[str, Any]:
        data = {"name": self.name, **self.data}
        if self.detail:
            data["detail"] = self.detail
        return {"code": self.code, "message": str(self), "data": data}
