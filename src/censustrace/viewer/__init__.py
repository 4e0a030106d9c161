"""The compliance lineage viewer: a server-rendered web app over the lineage store (see docs/viewer.md).

``create_viewer_app`` lives in ``censustrace.viewer.app``; this package module stays import-free so the
lineage store can register the viewer's tables without pulling in FastAPI.
"""
