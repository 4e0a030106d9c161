"""The lineage store's HTTP API, compatible with what OpenLineage clients expect of Marquez.

``POST /api/v1/lineage`` takes RunEvent, DatasetEvent and JobEvent documents and answers 201 Created
with an empty body, as Marquez does; the read routes return Marquez-shaped JSON. Serve it with
``uvicorn --factory censustrace.viewer.lineage_api:create_app``; OpenAPI docs are at ``/docs``.

The routes are built by :func:`lineage_router`, so the viewer (``censustrace.viewer.app``) serves the same
API with its own authentication: it passes the dependencies that guard writes and reads. ``create_app``
is the bare API (no authentication) for embedding and tests; what we serve is the viewer.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final, Literal, cast

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from censustrace.config import Settings, get_settings
from censustrace.errors import CensustraceError
from censustrace.lineage.batch import BatchNotArray, store_batch, store_one
from censustrace.lineage.ownership import LineageForbidden
from censustrace.lineage.spec import EventValidator, require_schemas
from censustrace.lineage.store.db import make_engine, upgrade
from censustrace.lineage.store.ingest import LineageStoreUnavailable
from censustrace.lineage.store.parse import LineageEventInvalid, LineageEventMalformed
from censustrace.lineage.store.queries import (
    LineageNotFound,
    LineageQueryInvalid,
    dataset_versions_page,
    datasets_json,
    get_run,
    get_run_facets,
    lineage_graph,
    list_datasets,
    list_jobs,
    list_namespaces,
    resolve_dataset,
    splits,
)
from censustrace.lineage.store.trace import trace_upstream
from censustrace.lineage.store.writer import LineageConflict
from censustrace.shares.traceback import LineageAmbiguous

DEFAULT_MAX_BODY_BYTES: Final = 8 * 1024 * 1024
Json = dict[str, Any]

_EVENT_SCHEMA: Final = {
    "description": "An OpenLineage RunEvent, DatasetEvent or JobEvent "
    "(https://openlineage.io/spec/2-0-2/OpenLineage.json)",
    "type": "object",
}


class RequestBodyError(CensustraceError):
    """A request body we will not read: too large, an unknown encoding, or a broken stream."""

    code = "CT-LINEAGE-BODY"

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed if gzip, refusing more than ``limit`` bytes (sent or decompressed)
    as soon as it is exceeded: Content-Length is checked first but not trusted, chunked bodies are
    counted as they arrive."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower() or "identity"
    if encoding not in ("identity", "gzip"):
        raise RequestBodyError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or none)")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestBodyError(400, f"invalid Content-Length {declared[:40]!r}")
        if int(declared) > limit:
            raise RequestBodyError(
                413, f"request body of {int(declared)} bytes exceeds the {limit} byte limit"
            )
    too_large = RequestBodyError(413, f"request body exceeds the {limit} byte limit")
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if encoding == "gzip" else None
    received, parts, size = 0, list[bytes](), 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large
            if inflater is not None:
                chunk = inflater.decompress(chunk, limit + 1 - size)
                if inflater.unconsumed_tail:
                    raise too_large
            size += len(chunk)
            if size > limit:
                raise too_large
            parts.append(chunk)
    except ClientDisconnect:
        raise RequestBodyError(400, "the client disconnected before sending the whole body") from None
    except zlib.error as exc:
        raise RequestBodyError(400, f"request body is not valid gzip ({exc})") from None
    if inflater is not None and not inflater.eof:
        raise RequestBodyError(400, "request body is truncated gzip")
    return b"".join(parts)


def lineage_engine(request: Request) -> Engine:
    """The lineage store engine of the app serving ``request`` (``app.state.lineage_engine()``: the
    viewer creates and migrates its engine on first use, since apps mounted inside Airflow get no
    lifespan events)."""
    engine: Engine = request.app.state.lineage_engine()
    return engine


def writer_of(request: Request) -> dict[str, Any]:
    """``producer`` and ``ownership`` for :func:`store_event`: set by the app's write dependency
    (``request.state.lineage_producer``) and at app creation (``app.state.lineage_ownership``); both
    None in the bare API, which trusts every writer."""
    ownership = getattr(request.app.state, "lineage_ownership", None)
    return {
        "producer": getattr(request.state, "lineage_producer", None),
        "ownership": ownership() if callable(ownership) else ownership,
    }


def _connection(request: Request) -> Iterator[Connection]:
    with lineage_engine(request).connect() as conn:
        yield conn


# Module level: FastAPI resolves the (string) annotations of the route functions in this namespace.
Conn = Annotated[Connection, Depends(_connection)]
Page = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0)]


def _error(status_code: int, error: CensustraceError, **extra: Any) -> JSONResponse:
    return JSONResponse({"code": error.code, "message": error.message, **extra}, status_code=status_code)


def lineage_router(
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    validator: EventValidator | None = None,
    write_dependencies: Sequence[Any] = (),
    read_dependencies: Sequence[Any] = (),
) -> APIRouter:
    """The lineage API routes under ``/api/v1``. ``write_dependencies`` guard ``POST /lineage``,
    ``read_dependencies`` every read route; ``/health`` is always open."""
    router = APIRouter(prefix="/api/v1")
    write, read = list(write_dependencies), list(read_dependencies)

    @router.post(
        "/lineage",
        status_code=201,
        response_class=Response,
        summary="Record one OpenLineage event",
        dependencies=write,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": _EVENT_SCHEMA}}}
        },
        responses={
            201: {"description": "Stored (or already stored: then header X-Censustrace-Duplicate: true)."},
            400: {"description": "Not JSON, not UTF-8 or a broken body."},
            409: {"description": "Contradicts the store (a run id reused for another job)."},
            401: {"description": "No or wrong producer token (when the server requires one)."},
            403: {"description": "An external producer naming the pipeline's datasets or jobs."},
            413: {"description": "Body over the size limit."},
            422: {"description": "Not a valid OpenLineage event; `problems` names each JSON path at fault."},
        },
    )
    async def post_lineage(request: Request) -> Response:
        body = await read_body(request, max_body_bytes)
        # Checked in this request's thread, stored with the other requests in flight (group commit).
        result = await run_in_threadpool(
            store_one, lineage_engine(request), body, validator, **writer_of(request)
        )
        headers = {"X-Censustrace-Duplicate": "true"} if result.duplicate else None
        return Response(status_code=201, headers=headers)

    @router.post(
        "/lineage/batch",
        summary="Record an array of OpenLineage events, with one outcome per event",
        dependencies=write,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "array", "items": _EVENT_SCHEMA}}},
            }
        },
        responses={
            200: {
                "description": "Every event's outcome: `results[i]` = {index, status (201 stored, 200 "
                "duplicate, 400/422 invalid, 403 names what the pipeline owns, 409 conflict, 503 store "
                "unavailable), code, message}."
            },
            400: {"description": "The body is not a JSON array."},
            413: {"description": "Body over the size limit."},
        },
    )
    async def post_lineage_batch(request: Request) -> JSONResponse:
        body = await read_body(request, max_body_bytes)
        report = await run_in_threadpool(
            store_batch, lineage_engine(request), body, validator, **writer_of(request)
        )
        return JSONResponse(report)

    @router.get("/lineage", summary="Lineage graph around a dataset or job", dependencies=read)
    def get_lineage(
        conn: Conn,
        node_id: Annotated[
            str, Query(alias="nodeId", description="dataset:<namespace>:<name> or job:<namespace>:<name>")
        ],
        depth: Annotated[int, Query(ge=0, le=100, description="how many jobs away to walk each way")] = 20,
    ) -> Json:
        return lineage_graph(conn, node_id, depth)

    @router.get("/namespaces", summary="Namespaces", dependencies=read)
    def get_namespaces(conn: Conn) -> Json:
        return {"namespaces": list_namespaces(conn)}

    @router.get("/namespaces/{namespace:path}/jobs", summary="Jobs of a namespace", dependencies=read)
    def get_jobs(conn: Conn, namespace: str, limit: Page = 100, offset: Offset = 0) -> Json:
        found, total = list_jobs(conn, namespace, limit=limit, offset=offset)
        return {"jobs": found, "totalCount": total}

    @router.get("/namespaces/{namespace:path}/datasets", summary="Datasets of a namespace", dependencies=read)
    def get_datasets(conn: Conn, namespace: str, limit: Page = 100, offset: Offset = 0) -> Json:
        found, total = list_datasets(conn, namespace, limit=limit, offset=offset)
        return {"datasets": found, "totalCount": total}

    def dataset_from_path(conn: Connection, namespace: str, name: str) -> int:
        # Both parts may hold slashes ("file:///archive/ab/..."): the router's split is the first guess,
        # every other split at "/datasets/" the next ones.
        candidates = [(namespace, name), *splits(f"{namespace}/datasets/{name}", "/datasets/")]
        dataset_id, _, _ = resolve_dataset(conn, dict.fromkeys(candidates))
        return dataset_id

    @router.get(
        "/namespaces/{namespace:path}/datasets/{name:path}/versions",
        summary="Versions of a dataset, latest first, each with its facets and the run that created it",
        dependencies=read,
    )
    def get_dataset_versions(
        conn: Conn, namespace: str, name: str, limit: Page = 100, offset: Offset = 0
    ) -> Json:
        dataset_id = dataset_from_path(conn, namespace, name)
        versions, total = dataset_versions_page(conn, dataset_id, limit=limit, offset=offset)
        return {"versions": versions, "totalCount": total}

    @router.get("/namespaces/{namespace:path}/datasets/{name:path}", summary="One dataset", dependencies=read)
    def get_dataset(conn: Conn, namespace: str, name: str) -> Json:
        dataset_id = dataset_from_path(conn, namespace, name)
        return datasets_json(conn, [dataset_id])[dataset_id]

    @router.get(
        "/jobs/runs/{run_id}",
        summary="A run: state, times, facets, input and output dataset versions",
        dependencies=read,
    )
    def get_job_run(conn: Conn, run_id: str) -> Json:
        return get_run(conn, run_id)

    @router.get("/jobs/runs/{run_id}/facets", summary="A run's run and job facets", dependencies=read)
    def get_job_run_facets(
        conn: Conn,
        run_id: str,
        facet_type: Annotated[
            Literal["run", "job"], Query(alias="type", description="which facets `facets` holds")
        ] = "run",
    ) -> Json:
        found = get_run_facets(conn, run_id)
        return {**found, "facets": found["runFacets" if facet_type == "run" else "jobFacets"]}

    @router.get(
        "/trace",
        summary="Trace a dataset version back to its sources, by exact versions",
        dependencies=read,
    )
    def get_trace(
        conn: Conn,
        namespace: str,
        name: str,
        version: Annotated[str | None, Query(description="default: the latest version")] = None,
    ) -> Json:
        return trace_upstream(conn, namespace, name, version).to_dict()

    @router.get("/health", summary="Liveness and database reachability")
    def get_health(request: Request) -> JSONResponse:
        try:
            with lineage_engine(request).connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return router


def add_lineage_error_handlers(app: FastAPI) -> None:
    """JSON error bodies ``{code, message}`` with the right status for the store's errors."""

    @app.exception_handler(LineageEventInvalid)
    async def _invalid(_request: Request, exc: LineageEventInvalid) -> JSONResponse:
        status = 400 if isinstance(exc, LineageEventMalformed) else 422
        return _error(status, exc, problems=exc.problems)

    @app.exception_handler(RequestBodyError)
    async def _bad_body(_request: Request, exc: RequestBodyError) -> JSONResponse:
        return _error(exc.status_code, exc)

    for error_type, status in _ERROR_STATUS:
        app.add_exception_handler(error_type, _answer_with(status))


#: The HTTP status of each store error that carries no status of its own.
_ERROR_STATUS: Final[tuple[tuple[type[CensustraceError], int], ...]] = (
    (LineageForbidden, 403),
    (LineageConflict, 409),
    (LineageNotFound, 404),
    (LineageAmbiguous, 409),
    (LineageQueryInvalid, 400),
    (BatchNotArray, 400),
    (LineageStoreUnavailable, 503),
)


def _answer_with(status: int) -> Any:
    async def answer(_request: Request, exc: Exception) -> JSONResponse:
        return _error(status, cast(CensustraceError, exc))  # registered for those types only

    return answer


def create_app(
    settings: Settings | None = None,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    engine: Engine | None = None,
    validator: EventValidator | None = None,
    migrate: bool = True,
) -> FastAPI:
    """The bare lineage API (no authentication) over the store at ``settings.lineage_db_url`` (or
    ``engine``).

    ``max_body_bytes`` caps one POSTed event (413 beyond it); ``validator`` defaults to the lenient spec
    validator; ``migrate`` upgrades the store's schema at startup."""
    require_schemas()  # a broken install stops here, not at the first event
    settings = settings or get_settings()
    store = engine or make_engine(settings.lineage_db_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            await run_in_threadpool(upgrade, store.url)
        yield
        if engine is None:
            store.dispose()

    app = FastAPI(
        title="censustrace lineage store",
        summary="OpenLineage events in, exact-version lineage out (Marquez-compatible routes).",
        lifespan=lifespan,
    )
    app.state.lineage_engine = lambda: store
    app.include_router(lineage_router(max_body_bytes=max_body_bytes, validator=validator))
    add_lineage_error_handlers(app)
    return app
