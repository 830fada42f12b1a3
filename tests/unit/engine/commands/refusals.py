"""Assertions the command tests share: a refusal changes no device row, writes exactly one
`<ACTION>_REFUSED` event (its control characters escaped) and calls no host."""
from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine.dao import audit
from engine.dao.models import VmDevice
from engine.errors import ValidationFailed


def rows(sessions) -> list[tuple[Any, ...]]:
    """Every device row, whole: what a refusal must leave untouched."""
    with sessions.begin() as s:
        return sorted((d.id, d.vm_id, d.type, d.device, d.is_plugged, d.plug_state, repr(d.address),
                       repr(d.spec_params), d.alias) for d in s.scalars(select(VmDevice)))


def refused(sessions, db, fake, action: str, call, *codes: str) -> ValidationFailed:
    """`call` is refused with exactly `codes`; one `<action>_REFUSED` event (carrying the reasons) is
    written, no row changes and no host is called."""
    before, events, calls = rows(sessions), len(db.events()), len(fake.calls)
    with pytest.raises(ValidationFailed) as err:
        call()
    assert err.value.status == 409
    assert [r.code for r in err.value.reasons] == list(codes)
    assert rows(sessions) == before
    new = db.events()[events:]
    assert [e.code for e in new] == [f"{action}_REFUSED"]
    assert new[0].vars["reasons"] == audit.printable([r.to_dict() for r in err.value.reasons])
    assert len(fake.calls) == calls
    return err.value
