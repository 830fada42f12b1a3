"""The engine's REST API: the Flask application factory (`engine.rest.app.create_app`), one
flask-smorest blueprint per resource, marshmallow schemas and the one fault handler."""
