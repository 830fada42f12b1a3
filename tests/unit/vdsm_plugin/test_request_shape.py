"""server.request_shape answers exactly as jsonrpcserver's own jsonschema validation of a request."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonrpcserver.main import default_validator

from vdsm_plugin.server import request_shape


def schema_says(request) -> bool:
    try:
        default_validator(request)
    except Exception:  # noqa: BLE001 - jsonschema's ValidationError, whatever its kind
        return False
    return True


def shape_says(request) -> bool:
    try:
        request_shape(request)
    except ValueError:
        return False
    return True


OK = {"jsonrpc": "2.0", "method": "Host.ping"}
CASES = [
    OK, {**OK, "id": 1}, {**OK, "id": "a"}, {**OK, "id": None}, {**OK, "id": 1.5}, {**OK, "id": True},
    {**OK, "id": []}, {**OK, "id": {}}, {**OK, "params": {}}, {**OK, "params": []}, {**OK, "params": None},
    {**OK, "params": "x"}, {**OK, "params": 1}, {**OK, "extra": 1}, {"jsonrpc": "2.0"}, {"method": "m"},
    {**OK, "jsonrpc": "1.0"}, {**OK, "jsonrpc": 2.0}, {**OK, "method": 1}, {**OK, "method": None},
    [], [OK], [OK, {**OK, "id": 2}], [OK, {"method": "m"}], [[OK]], [1], 1, "x", None, True, {},
]


@pytest.mark.parametrize("request_", CASES)
def test_same_answer_as_the_schema(request_):
    assert shape_says(request_) == schema_says(request_)


values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
                      lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=3), inner,
                                                                                  max_size=2), max_leaves=4)
requests = st.fixed_dictionaries({}, optional={"jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | values,
                                               "method": st.text(max_size=3) | values, "params": values,
                                               "id": values, "x": values})


@settings(max_examples=300, deadline=None)
@given(st.one_of(requests, st.lists(requests, max_size=3), values))
def test_same_answer_as_the_schema_for_any_json(request_):
    assert shape_says(request_) == schema_says(request_)
