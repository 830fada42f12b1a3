"""Syntax at the edge: a form's fields read into the types the commands' Params take. A field that is
not what it should be is a 400 with one INVALID_FIELD reason each; meaning is the commands' to check."""
from __future__ import annotations

from typing import Any

from flask import request

from engine import reasons as R
from engine.errors import EngineError, Reason


class FormInvalid(EngineError):
    status = 400
    code = "BAD_REQUEST"


class Form:
    def __init__(self) -> None:
        self.problems: list[Reason] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = (request.form.get(name) or "").strip()
        return value if value else default

    def integer(self, name: str, default: int | None = None) -> int | None:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            self.problems.append(Reason(R.INVALID_FIELD, f"{name}: {raw!r} is not a whole number.",
                                        {"field": name, "value": raw}))
            return default

    def flag(self, name: str) -> bool:
        return request.form.get(name) in ("on", "true", "1", "yes")

    def check(self) -> None:
        if self.problems:
            message = "The form is not valid: " + " ".join(r.message for r in self.problems)
            raise FormInvalid(message, reasons=self.problems)


def pick(**values: Any) -> dict[str, Any]:
    """The values given (None: left to the command's default)."""
    return {k: v for k, v in values.items() if v is not None}
