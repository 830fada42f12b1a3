"""/api/clusters: list, create, get."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from engine.commands import add_cluster
from engine.dao import clusters as clusters_dao
from engine.api.common import Blueprint, not_found, run, sessions
from engine.api.schemas import ClusterCreateSchema, ClusterSchema
from engine.api.views import cluster_view


def read(cluster_id: str) -> dict:
    with sessions()() as s:
        cluster = clusters_dao.get(s, cluster_id)
        if cluster is None:
            raise not_found("cluster", cluster_id)
        return cluster_view(cluster)


def make_blueprint() -> Blueprint:
    blp = Blueprint("clusters", __name__, url_prefix="/api/clusters",
                    description="Clusters: groups of hosts sharing a compatibility version.")

    @blp.route("")
    class Clusters(MethodView):
        @blp.response(200, ClusterSchema(many=True))
        def get(self):
            """List clusters"""
            with sessions()() as s:
                return [cluster_view(c) for c in clusters_dao.list(s)]

        @blp.arguments(ClusterCreateSchema)
        @blp.response(201, ClusterSchema, headers={"Location": {"schema": {"type": "string"}}})
        def post(self, data):
            """Create a cluster"""
            outcome = run(add_cluster, **data)
            return read(outcome.id), 201, {"Location": url_for("clusters.ClusterById", cluster_id=outcome.id)}

    @blp.route("/<string:cluster_id>")
    class ClusterById(MethodView):
        @blp.response(200, ClusterSchema)
        def get(self, cluster_id):
            """Get a cluster"""
            return read(cluster_id)

    return blp
