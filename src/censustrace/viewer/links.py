"""URLs of viewer pages for other faces (Airflow extra links, CLI output): no FastAPI needed.

``CENSUSTRACE_PUBLIC_URL`` (``Settings.viewer_base_url``) is where users' browsers reach the viewer:
standalone (``censustrace serve``: ``http://127.0.0.1:$CENSUSTRACE_API_PORT``) or inside Airflow
(``http://<airflow>/censustrace``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from censustrace.config import Settings

#: Where the Airflow plugin mounts the viewer inside Airflow's API server.
AIRFLOW_PREFIX = "/censustrace"


def trace_url(settings: Settings, namespace: str, name: str, version: str | None = None) -> str:
    """The trace page of a dataset version (its latest version when ``version`` is None)."""
    query = {"ns": namespace, "name": name, **({"version": version} if version else {})}
    return f"{settings.viewer_base_url}/trace?{urlencode(query)}"


def dataset_url(settings: Settings, namespace: str, name: str, version: str | None = None) -> str:
    query = {"ns": namespace, "name": name, **({"version": version} if version else {})}
    return f"{settings.viewer_base_url}/dataset?{urlencode(query)}"


def run_url(settings: Settings, run_id: str) -> str:
    return f"{settings.viewer_base_url}/runs/{run_id}"
