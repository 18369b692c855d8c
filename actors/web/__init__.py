"""The web dashboard and its JSON API (``pfd dashboard``): app, access, routes, templates, static files."""

from actors.web.app import create_app

__all__ = ["create_app"]
