"""Concurrent creations under one unique name through the REST API, on SQLite and on PostgreSQL
(PLUGBOARD_TEST_DB_URL): one answers 201, every other 409 NAME_IN_USE, never a 500, and one row is
left. (Flavors have their own race test in test_flavors.py; NIC names per VM in
commands/test_concurrency.py.)"""
from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from engine.app import create_app
from engine.dao import db
from tests.unit.engine.fakehost import FakeHost, FakeHosts
from tests.unit.engine.race import race
from tests.unit.engine.tokens import authenticated, issue_token

CONTENDERS = 20

BODIES = {
    "vms": {"name": "race", "os_type": "rhel_9x64"},
    "clusters": {"name": "race"},
    "hosts": {"name": "race", "url": "http://127.0.0.1:54321/jsonrpc"},
}


@pytest.fixture
def race_app(sessions, db_url, fake_hosts: FakeHosts):
    """The app on the test's database (its tables made by `sessions`), with sessions made as the
    engine's server makes them (SQLite: IMMEDIATE transactions)."""
    kwargs: dict[str, Any] = {} if db.is_sqlite(db_url) else {"pool_size": 25, "max_overflow": 10}
    engine = db.make_engine(db_url, sqlite_begin="immediate", **kwargs)
    try:
        yield create_app({"sessions": db.make_sessions(engine), "hosts": fake_hosts, "TESTING": True})
    finally:
        engine.dispose()


@pytest.mark.parametrize("resource", sorted(BODIES))
def test_concurrent_creations_of_one_name_one_wins_the_others_get_409(race_app: Flask, fake_hosts, resource):
    app = race_app
    fake_hosts.add(FakeHost("race"))
    token = issue_token(app.config["sessions"])

    def create(_i: int) -> tuple[int, Any]:
        r = authenticated(app.test_client(), token).post(f"/api/{resource}", json=BODIES[resource])
        return r.status_code, r.get_json()

    answers = race(CONTENDERS, create)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, errors
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [409] * (CONTENDERS - 1), answers
    # The hosts' contenders all name one agent too: a loser may be refused for that as well.
    allowed = {"NAME_IN_USE", "AGENT_REGISTERED"} if resource == "hosts" else {"NAME_IN_USE"}
    for status, body in answers:
        if status == 409:
            codes = [r["code"] for r in body["fault"]["reasons"]]
            assert codes and set(codes) <= allowed and ("NAME_IN_USE" in codes or resource == "hosts"), body
    listed = authenticated(app.test_client(), token).get(f"/api/{resource}").get_json()
    assert [row["name"] for row in listed].count("race") == 1


def test_concurrent_registrations_of_one_agent_under_many_names_one_wins(race_app: Flask, fake_hosts):
    app = race_app
    agent = fake_hosts.add(FakeHost("agent"))
    for i in range(CONTENDERS):
        fake_hosts.by_name[f"name{i}"] = agent          # every name reaches the one agent
    token = issue_token(app.config["sessions"])

    def create(i: int) -> tuple[int, Any]:
        r = authenticated(app.test_client(), token).post(
            "/api/hosts", json={"name": f"name{i}", "url": f"http://127.0.0.{i + 1}:54321/jsonrpc"})
        return r.status_code, r.get_json()

    answers = race(CONTENDERS, create)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, errors
    assert sorted(status for status, _ in answers) == [201] + [409] * (CONTENDERS - 1), answers
    for status, body in answers:
        if status == 409:
            assert [r["code"] for r in body["fault"]["reasons"]] == ["AGENT_REGISTERED"], body
    assert len(authenticated(app.test_client(), token).get("/api/hosts").get_json()) == 1


def test_concurrent_first_creations_on_an_empty_database_share_one_default_cluster(race_app: Flask):
    """Each creates the Default cluster it finds missing: one insert wins, the others take it, and
    every VM is created (a lost insert was answered "A VM named ... already exists")."""
    app = race_app
    token = issue_token(app.config["sessions"])

    def create(i: int) -> tuple[int, Any]:
        r = authenticated(app.test_client(), token).post("/api/vms", json={"name": f"first{i}",
                                                                           "os_type": "rhel_9x64"})
        return r.status_code, r.get_json()

    answers = race(CONTENDERS, create)
    errors = [a for a in answers if isinstance(a, BaseException)]
    assert not errors, errors
    assert [status for status, _ in answers] == [201] * CONTENDERS, answers
    clusters = authenticated(app.test_client(), token).get("/api/clusters").get_json()
    assert [c["name"] for c in clusters] == ["Default"]
    assert {body["cluster_id"] for _, body in answers} == {clusters[0]["id"]}
