"""The facade's version documents and microversion headers."""
from __future__ import annotations

import pytest

from tests.unit.engine.nova.conftest import V21, nova_fault


def test_root_lists_the_versions(client):
    r = client.get("/")
    assert r.status_code == 200
    versions = {v["id"]: v for v in r.get_json()["versions"]}
    assert set(versions) == {"v2.0", "v2.1"}
    assert versions["v2.1"]["status"] == "CURRENT"
    assert (versions["v2.1"]["min_version"], versions["v2.1"]["version"]) == ("2.1", "2.1")
    assert versions["v2.1"]["links"] == [{"rel": "self", "href": "http://localhost/v2.1/"}]
    assert versions["v2.0"]["links"] == [{"rel": "self", "href": "http://localhost/v2/"}]


@pytest.mark.parametrize("path", ["/v2.1", "/v2.1/"])
def test_v21_document(client, path):
    r = client.get(path)
    assert r.status_code == 200
    doc = r.get_json()["version"]
    assert (doc["id"], doc["status"], doc["version"], doc["min_version"]) == ("v2.1", "CURRENT", "2.1", "2.1")
    assert {"rel": "self", "href": "http://localhost/v2.1/"} in doc["links"]
    assert doc["media-types"][0]["type"] == "application/vnd.openstack.compute+json;version=2.1"


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_v2_document(client, path):
    doc = client.get(path).get_json()["version"]
    assert (doc["id"], doc["version"], doc["min_version"]) == ("v2.0", "", "")


@pytest.mark.parametrize("headers", [{}, {"OpenStack-API-Version": "compute 2.1"},
                                     {"OpenStack-API-Version": "volume 3.0, compute latest"},
                                     {"X-OpenStack-Nova-API-Version": "2.1"},
                                     {"X-OpenStack-Nova-API-Version": "latest"}])
def test_answers_say_microversion_2_1(client, headers):
    r = client.get(f"{V21}/flavors", headers=headers)
    assert r.status_code == 200
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    vary = {v.strip() for v in r.headers["Vary"].split(",")}
    assert {"OpenStack-API-Version", "X-OpenStack-Nova-API-Version"} <= vary


@pytest.mark.parametrize("headers", [{"OpenStack-API-Version": "compute 2.2"},
                                     {"X-OpenStack-Nova-API-Version": "2.0"},
                                     {"X-OpenStack-Nova-API-Version": "3.1"}])
def test_unsupported_microversion_is_406(client, headers):
    message = nova_fault(client.get(f"{V21}/flavors", headers=headers), "computeFault", 406)
    assert "Minimum is 2.1 and maximum is 2.1" in message


def test_malformed_microversion_is_400(client):
    message = nova_fault(client.get(f"{V21}/flavors", headers={"OpenStack-API-Version": "compute two"}),
                         "badRequest", 400)
    assert "invalid format" in message


def test_the_new_header_wins_over_the_legacy_one(client):
    r = client.get(f"{V21}/flavors", headers={"OpenStack-API-Version": "compute 2.1",
                                              "X-OpenStack-Nova-API-Version": "2.99"})
    assert r.status_code == 200


def test_legacy_v2_has_no_microversions(client):
    r = client.get("/v2/t1/flavors", headers={"X-OpenStack-Nova-API-Version": "2.99"})
    assert r.status_code == 200
    assert "OpenStack-API-Version" not in r.headers and "X-OpenStack-Nova-API-Version" not in r.headers


def test_v3_negotiates_too(client):
    r = client.get("/v3/flavors")
    assert r.status_code == 200 and r.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    nova_fault(client.get("/v3/flavors", headers={"X-OpenStack-Nova-API-Version": "2.5"}), "computeFault", 406)


def test_legacy_v2_is_deprecated_as_nova_lists_it(client):
    versions = {v["id"]: v for v in client.get("/").get_json()["versions"]}
    assert versions["v2.0"]["status"] == "DEPRECATED"
    assert client.get("/v2").get_json()["version"]["status"] == "DEPRECATED"


@pytest.mark.parametrize("headers, status", [
    ({"OpenStack-API-Version": "compute 2.1, compute 2.5"}, 406),    # the last compute entry is the one asked
    ({"OpenStack-API-Version": "compute 2.5, compute 2.1"}, 200),
    ({"X-OpenStack-Nova-API-Version": "2.5, 2.1"}, 200),             # the legacy header's last value
    ({"OpenStack-API-Version": "compute LATEST"}, 400),              # "latest" is spelled so, alone
    ({"X-OpenStack-Nova-API-Version": "Latest"}, 400)])
def test_microversion_headers_are_read_as_microversion_parse_reads_them(client, headers, status):
    assert client.get(f"{V21}/flavors", headers=headers).status_code == status
