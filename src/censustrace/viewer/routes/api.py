"""The viewer's own JSON API (beside the lineage routes): search and the access log.

Share, trace-of-share and disclosure routes are added here once the share register exists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from censustrace.viewer import auth
from censustrace.viewer.deps import ApiUser, require, viewer_of
from censustrace.viewer.lineage_views import search

router = APIRouter(prefix="/api/v1", tags=["viewer"])
Json = dict[str, Any]


@router.get("/search", summary="Datasets and jobs whose name contains q (case-insensitive)")
def api_search(
    request: Request, user: ApiUser, q: Annotated[str, Query(min_length=1, max_length=200)]
) -> Json:
    with viewer_of(request).engine().connect() as conn:
        return search(conn, q)


@router.get(
    "/trace/find",
    summary="Trace anything a user holds (share id, outbound file path, extract id, received sha256, "
    "dataset name with or without @version): sources back to received files, consumers forward to shares",
    responses={404: {"description": "CT-LINEAGE-NOT-FOUND"}, 409: {"description": "CT-LINEAGE-AMBIGUOUS"}},
)
def api_trace_find(
    request: Request,
    user: ApiUser,
    q: Annotated[str, Query(min_length=1, max_length=1000)],
    version: Annotated[str | None, Query(max_length=200, description="exact dataset version")] = None,
) -> Json:
    from censustrace.shares.traceback import trace_any

    viewer = viewer_of(request)
    return trace_any(viewer.settings, viewer.engine(), q, version)


@router.get("/access-log", summary="The access log, newest first (compliance only)")
def api_access_log(
    request: Request,
    user: ApiUser,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Json:
    require(user, "access_log", "read the access log")
    rows, total = auth.read_access_log(viewer_of(request).engine(), limit=limit, offset=offset)
    return {"entries": rows, "totalCount": total}
