"""Airflow plugin: the censustrace compliance viewer inside Airflow's API server, with navigation.

The viewer is mounted at ``/censustrace`` (``fastapi_apps``); ``external_views`` add "Lineage viewer"
entries to Airflow's navigation. Apps mounted by a plugin are not behind Airflow's login by themselves,
so the viewer checks Airflow's token itself (``create_viewer_app(airflow=True)``): the user signed in to
Airflow is let in with the viewer role their Airflow role maps to (CENSUSTRACE_VIEWER_AIRFLOW_ROLES),
without a second login; viewer API tokens keep working (see docs/viewer.md).

Importing this file must stay cheap (every Airflow component loads plugins): no database, no FastAPI.
The viewer app is built on its first request by a small ASGI wrapper.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/censustrace"


class LazyViewer:
    """An ASGI app that builds ``create_viewer_app()`` when the first request arrives."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        with self._lock:
            if self._app is None:
                from censustrace.viewer.app import create_viewer_app

                self._app = create_viewer_app(airflow=True)
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # Mounted apps get no lifespan events; answer one politely if a server sends it anyway.
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        app = self._app or self._build()
        await app(scope, receive, send)


viewer_app = LazyViewer()


class CensustraceViewerPlugin(AirflowPlugin):
    name = "censustrace_viewer"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": viewer_app, "url_prefix": URL_PREFIX, "name": "censustrace compliance viewer"},
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "Lineage viewer",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "category": "censustrace",
            "url_route": "censustrace_viewer",
        },
        {
            "name": "Search lineage",
            "href": f"{URL_PREFIX}/search",
            "destination": "nav",
            "category": "censustrace",
            "url_route": "censustrace_search",
        },
    ]
