"""The HitCall workspace in the browser (agents and supervisors), served with the REST API."""

from .app import WebDeps, setup_web
from .live import LiveHub, WallboardSources

__all__ = ["LiveHub", "WallboardSources", "WebDeps", "setup_web"]
