"""The HTML pages over the lineage store: home (charts, recent runs), search, dataset, job, run, trace,
the access log, the API reference and the GX Data Docs.

Datasets are addressed by query parameters (``?ns=…&name=…&version=…``) because their names hold
slashes and colons; every value is escaped by the templates and bound as a SQL parameter.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import func, select

from censustrace.lineage.store.queries import (
    LineageNotFound,
    dataset_versions_page,
    datasets_json,
    get_run,
    jobs_json,
    run_summaries,
)
from censustrace.lineage.store.tables import datasets, jobs, runs
from censustrace.lineage.store.trace import trace_upstream
from censustrace.viewer import auth
from censustrace.viewer.charts import bar_chart
from censustrace.viewer.deps import PageNotFound, PageUser, href, require, viewer_of
from censustrace.viewer.lineage_views import (
    assertions_of,
    dataset_jobs,
    dq_pass_rate_by_term,
    held_thing,
    job_runs,
    lookup_dataset,
    lookup_job,
    search,
    short_name,
    trace_view,
)
from censustrace.viewer.templating import render

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Query(max_length=2000)]
PAGE_SIZE = 50


def _render(request: Request, template: str, principal: auth.Principal, **context: Any) -> HTMLResponse:
    return render(request, template, principal, data_docs=_has_data_docs(request), **context)


def _has_data_docs(request: Request) -> bool:
    return (viewer_of(request).data_docs_dir / "index.html").is_file()


def _link(request: Request):  # type: ignore[no-untyped-def]
    def make(kind: str, **params: object) -> str:
        return href(request, kind, **params)

    return make


@router.get("/", name="home")
def home(request: Request, user: PageUser) -> HTMLResponse:
    with viewer_of(request).engine().connect() as conn:
        counts = {
            "datasets": conn.execute(select(func.count()).select_from(datasets)).scalar_one(),
            "jobs": conn.execute(select(func.count()).select_from(jobs)).scalar_one(),
            "runs": conn.execute(select(func.count()).select_from(runs)).scalar_one(),
        }
        recent_ids = [
            int(i)
            for i in conn.execute(select(runs.c.id).order_by(runs.c.created_at.desc()).limit(15)).scalars()
        ]
        summaries = run_summaries(conn, recent_ids)
        recent = [summaries[i] for i in recent_ids]
        dq = dq_pass_rate_by_term(conn)
    dq_chart = bar_chart(
        [(row["term"], row["rate"]) for row in dq],
        label="Data-quality assertions passed, per census term",
        unit="%",
        maximum=100.0,
    )
    from censustrace.viewer.routes.shares import share_charts

    charts = share_charts(request)
    return _render(
        request,
        "home.html",
        user,
        counts=counts,
        recent=recent,
        dq=dq,
        dq_chart=dq_chart,
        share_charts=charts,
    )


@router.get("/search", name="search")
def search_page(request: Request, user: PageUser, q: Text = "") -> HTMLResponse:
    found = None
    if q.strip():
        with viewer_of(request).engine().connect() as conn:
            found = search(conn, q)
            found["held"] = held_thing(viewer_of(request).settings, conn, q)
    return _render(request, "search.html", user, q=q, found=found)


@router.get("/dataset", name="dataset")
def dataset_page(
    request: Request,
    user: PageUser,
    ns: Text = "",
    name: Text = "",
    version: Text = "",
    offset: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    with viewer_of(request).engine().connect() as conn:
        dataset_id = lookup_dataset(conn, ns, name)
        if dataset_id is None:
            raise PageNotFound("no such dataset in the lineage store")
        record = datasets_json(conn, [dataset_id])[dataset_id]
        versions, total = dataset_versions_page(conn, dataset_id, limit=PAGE_SIZE, offset=offset)
        selected = next((v for v in versions if v["version"] == version), None) if version else None
        if version and selected is None:
            selected = _one_version(conn, dataset_id, version)
        related = dataset_jobs(conn, dataset_id)
    shown = selected or (versions[0] if versions else None)
    return _render(
        request,
        "dataset.html",
        user,
        dataset=record,
        short=short_name(record["name"]),
        versions=versions,
        total=total,
        offset=offset,
        page_size=PAGE_SIZE,
        shown=shown,
        assertions=assertions_of(shown["facets"]) if shown else [],
        related=related,
    )


def _one_version(conn: object, dataset_id: int, version: str) -> dict[str, object]:
    from censustrace.lineage.store.queries import find_dataset_version, merged_facets, version_refs
    from censustrace.lineage.store.tables import facets

    version_id = find_dataset_version(conn, dataset_id, version)  # type: ignore[arg-type]
    if version_id is None:
        raise PageNotFound("no such version of this dataset in the lineage store")
    ref = version_refs(conn, [version_id])[version_id]  # type: ignore[arg-type]
    found = merged_facets(conn, facets.c.dataset_version_id, [version_id], "dataset_version")  # type: ignore[arg-type]
    return {**ref, "facets": found.get(version_id, {}), "createdByRun": None}


@router.get("/job", name="job")
def job_page(request: Request, user: PageUser, ns: Text = "", name: Text = "") -> HTMLResponse:
    with viewer_of(request).engine().connect() as conn:
        job_id = lookup_job(conn, ns, name)
        if job_id is None:
            raise PageNotFound("no such job in the lineage store")
        record = jobs_json(conn, [job_id])[job_id]
        recent = job_runs(conn, job_id)
    return _render(request, "job.html", user, job=record, runs=recent)


@router.get("/runs/{run_id}", name="run")
def run_page(request: Request, user: PageUser, run_id: str) -> HTMLResponse:
    with viewer_of(request).engine().connect() as conn:
        try:
            run = get_run(conn, run_id[:64])
        except LineageNotFound:
            raise PageNotFound("no such run in the lineage store") from None
    for direction in ("input", "output"):
        for item in run[f"{direction}DatasetVersions"]:
            item["assertions"] = assertions_of(item.get(f"{direction}Facets") or {}) or assertions_of(
                item.get("facets") or {}
            )
    return _render(request, "run.html", user, run=run)


@router.get("/trace", name="trace")
def trace_page(
    request: Request, user: PageUser, ns: Text = "", name: Text = "", version: Text = ""
) -> HTMLResponse:
    with viewer_of(request).engine().connect() as conn:
        if lookup_dataset(conn, ns, name) is None:
            raise PageNotFound("no such dataset in the lineage store")
        try:
            result = trace_upstream(conn, ns, name, version or None)
        except LineageNotFound:
            raise PageNotFound("no such version of this dataset in the lineage store") from None
        view = trace_view(result, _link(request), conn)
    return _render(request, "trace.html", user, trace=view, short=short_name(view["start"]["name"]))


@router.get("/access-log", name="access_log")
def access_log_page(
    request: Request, user: PageUser, offset: Annotated[int, Query(ge=0)] = 0
) -> HTMLResponse:
    require(user, "access_log", "read the access log")
    rows, total = auth.read_access_log(viewer_of(request).engine(), limit=PAGE_SIZE, offset=offset)
    return _render(
        request, "access_log.html", user, rows=rows, total=total, offset=offset, page_size=PAGE_SIZE
    )


@router.get("/docs", name="api_docs")
def api_docs(request: Request, user: PageUser) -> HTMLResponse:
    """The JSON API reference, drawn from the OpenAPI document (no third-party UI)."""
    spec = request.app.openapi()
    operations = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "parameters": [
                        f"{p['name']} ({p['in']}{', required' if p.get('required') else ''})"
                        for p in op.get("parameters", [])
                    ],
                    "responses": sorted(op.get("responses", {})),
                }
            )
    return _render(request, "api_docs.html", user, operations=operations, title=spec["info"]["title"])


@router.get("/data-docs/{path:path}", name="data_docs")
def data_docs(request: Request, user: PageUser, path: str = "") -> FileResponse:
    """GX Data Docs written by validation under ``$CENSUSTRACE_HOME/quality/data-docs``."""
    base = viewer_of(request).data_docs_dir.resolve()
    target = (base / (path or "index.html")).resolve()
    if target.is_dir():
        target = target / "index.html"
    if not base.is_dir() or not target.is_relative_to(base) or not target.is_file():
        raise PageNotFound("no such Data Docs page (validation has not written Data Docs yet?)")
    media_type = mimetypes.guess_type(Path(target).name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media_type)
