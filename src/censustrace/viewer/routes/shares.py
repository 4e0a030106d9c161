"""Share pages and their JSON API: the share register (filter, sort, CSV), share detail (trace back to the
exact files, column view), subject access (POST only; PDF for compliance) and the Article 30 record.

Every subject access lookup (allowed, refused or rejected) and every export is written to the chained
access log with its kind and result count, and a lookup with the pupil's key, never the UPN. The UPN
travels only in a POST body: it is in no URL, no log line and no redirect, and the response is marked
``no-store``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from censustrace.compliance.documents import pdf
from censustrace.errors import CensustraceError
from censustrace.lineage.store.queries import LineageNotFound
from censustrace.viewer import auth
from censustrace.viewer.charts import bar_chart, stacked_columns
from censustrace.viewer.deps import ApiUser, PageNotFound, PageUser, form_with_csrf, href, require, viewer_of
from censustrace.viewer.lineage_views import trace_view
from censustrace.viewer.shares_views import (
    REGISTER_COLUMNS,
    SORTS,
    RegisterQuery,
    UpnRejected,
    charts_data,
    column_view,
    normalise_upn,
    register,
    register_csv,
    register_page,
)
from censustrace.viewer.templating import render

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["shares"])
Text = Annotated[str, Query(max_length=200)]
Json = dict[str, Any]


def _render(request: Request, template: str, user: auth.Principal, **context: Any) -> HTMLResponse:
    return render(request, template, user, **context)


def _download(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(
        body.encode("utf-8") if isinstance(body, str) else body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _log(
    request: Request,
    user: auth.Principal,
    action: str,
    what: str,
    count: int | None,
    outcome: str = "ok",
    upn: str | None = None,
) -> None:
    """A chained access log row; a lookup names the pupil by pupil key (never the UPN)."""
    from censustrace.audit.heads import publish_heads
    from censustrace.intake.stage import pupil_key

    settings = viewer_of(request).settings
    key = pupil_key(settings.pupil_key_secret_value(), upn) if upn else None
    auth.log_access(
        viewer_of(request).engine(), user, action, what, result_count=count, outcome=outcome, pupil_key=key
    )
    publish_heads(settings)


def _share_or_404(request: Request, share_id: str) -> Any:
    from censustrace.shares.errors import ShareError
    from censustrace.shares.register import find_share

    try:
        return find_share(viewer_of(request).settings, share_id[:64])
    except ShareError:
        raise PageNotFound("no such share in the share register") from None


def _share_trace(request: Request, share: Any) -> Json | None:
    """The trace of the released file (exact version = its sha256) back to the received census files."""
    from censustrace.shares.traceback import trace_share

    if not share.file_path or not share.sha256:
        return None
    with viewer_of(request).engine().connect() as conn:
        try:
            result = trace_share(conn, share)  # by its release run: a moved home traces the same
        except LineageNotFound:
            return None
        return trace_view(result, lambda kind, **params: href(request, kind, **params), conn)


def _share_lineage(request: Request, share: Any, by: str, page: int) -> Json | None:
    """The grouped graph and one page of received files behind the released file (None if there is
    no released file or its lineage is not in the store)."""
    from censustrace.lineage.store.queries import find_dataset, find_dataset_version
    from censustrace.viewer.share_graph import EXPANSIONS, share_lineage

    if not share.file_path or not share.sha256:
        return None
    with viewer_of(request).engine().connect() as conn:
        dataset_id = find_dataset(conn, "file", share.file_path)
        start = find_dataset_version(conn, dataset_id, share.sha256) if dataset_id is not None else None
        if start is None:
            return None
        return share_lineage(
            conn,
            start,
            share_id=share.share_id,
            start_label=f"to {share.recipient or 'the recipient'}",
            by=by if by in EXPANSIONS else "",
            page=page,
            href=lambda kind, **params: href(request, kind, **params),
        )


# Register ------------------------------------------------------------------------------------------------
REGISTER_PAGE_SIZE = 100


@router.get("/shares", name="shares")
def shares_page(
    request: Request,
    user: PageUser,
    status: Text = "",
    recipient: Text = "",
    purpose: Text = "",
    q: Text = "",
    sort: Text = "date",
    order: Text = "desc",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    query = RegisterQuery(status, recipient, purpose, q, sort if sort in SORTS else "date", order != "asc")
    rows, total = register_page(
        viewer_of(request).settings, query, limit=REGISTER_PAGE_SIZE, offset=(page - 1) * REGISTER_PAGE_SIZE
    )
    filters = {"status": status, "recipient": recipient, "purpose": purpose, "q": q}
    return _render(
        request,
        "shares.html",
        user,
        rows=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // REGISTER_PAGE_SIZE)),
        filters=filters,
        sort=query.sort,
        order="asc" if order == "asc" else "desc",
        columns=REGISTER_COLUMNS,
        sorts=SORTS,
    )


@router.get("/shares.csv", name="shares_csv")
def shares_csv(
    request: Request,
    user: PageUser,
    status: Text = "",
    recipient: Text = "",
    purpose: Text = "",
    q: Text = "",
) -> Response:
    require(user, "export", "export the share register")
    rows = register(viewer_of(request).settings, status=status, recipient=recipient, purpose=purpose, text=q)
    _log(request, user, "export", "share_register.csv", len(rows))
    return _download(register_csv(rows), "text/csv; charset=utf-8", "share-register.csv")


@router.get("/shares/{share_id}", name="share")
def share_page(
    request: Request,
    user: PageUser,
    share_id: str,
    by: Annotated[str, Query(max_length=10)] = "",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> HTMLResponse:
    share = _share_or_404(request, share_id)
    return _render(
        request,
        "share.html",
        user,
        share=share,
        summary=share.summary(),
        trace=_share_lineage(request, share, by, page),
        columns=column_view(share),
    )


# Subject access ----------------------------------------------------------------------------------------
def _may_look_up(request: Request, user: auth.Principal) -> None:
    if not user.can("subject_access"):
        _log(request, user, "subject_access", "subject_access.lookup", None, outcome="denied")
        require(user, "subject_access", "look up a pupil (subject access)")


@router.get("/subject-access", name="subject_access")
def subject_access_form(request: Request, user: PageUser) -> HTMLResponse:
    _may_look_up(request, user)
    return _render(request, "subject_access.html", user, result=None, error=None)


@router.post("/subject-access", name="subject_access_lookup")
async def subject_access_lookup(request: Request, user: PageUser) -> Response:
    form = await form_with_csrf(request, user)
    await run_in_threadpool(_may_look_up, request, user)
    as_pdf = form.get("format") == "pdf"
    by_name = form.get("method") == "name_dob"
    if as_pdf and not user.can("export_pupil_data"):
        await run_in_threadpool(_log, request, user, "export", "subject_access.pdf", None, "denied")
        require(user, "export_pupil_data", "download a subject access response")
    if by_name and not user.can("export_pupil_data"):
        # Looking a child up by name and date of birth is for compliance staff only.
        await run_in_threadpool(_log, request, user, "subject_access", "subject_access.name", None, "denied")
        require(user, "export_pupil_data", "look a pupil up by name and date of birth")
    what = "subject_access.name" if by_name else "subject_access.lookup"
    try:
        if by_name:
            from censustrace.compliance.subject import NameDob

            who = NameDob.parse(form.get("surname", ""), form.get("forename", ""), form.get("dob", ""))
            result = await run_in_threadpool(_lookup_name, request, user, who)
            upn = ""
        else:
            upn = normalise_upn(form.get("upn", ""))
            result = await run_in_threadpool(_lookup_upn, request, user, upn, "viewer")
    except CensustraceError as rejected:
        await run_in_threadpool(_log, request, user, "subject_access", what, None, "rejected")
        return _render(request, "subject_access.html", user, result=None, error=rejected.message)
    count = sum(len(p["shares"]) for p in result["pupils"])
    if as_pdf:
        await run_in_threadpool(_log, request, user, "export", "subject_access.pdf", count, "ok", upn)
        return _download(_subject_access_pdf(request, result), "application/pdf", "subject-access.pdf")
    # A name lookup's pupils are recorded by pupil key in subject_lookups (compliance.subject).
    await run_in_threadpool(_log, request, user, "subject_access", what, count, "ok", upn or None)
    # The identifiers go back only inside this POST answer, so the PDF button can send them again.
    return _render(
        request, "subject_access.html", user, result=result, error=None, upn=upn, form=form if by_name else {}
    )


def _lookup_upn(request: Request, user: auth.Principal, upn: str, via: str) -> Json:
    """One child found by a current or former UPN: ``{"pupils": [answer]}`` (empty if no one)."""
    from censustrace.compliance.subject import look_up_upns

    settings = viewer_of(request).settings
    answer = look_up_upns(settings, [upn], user=user.name, via=via)["requests"][0]
    found = answer["data"] or answer["shares"] or answer["decisions"]
    return {"pupils": [answer] if found else [], "shares": answer["shares"], "decisions": answer["decisions"]}


def _lookup_name(request: Request, user: auth.Principal, who: Any, via: str = "viewer") -> Json:
    from censustrace.compliance.subject import look_up_name

    return look_up_name(viewer_of(request).settings, who, user=user.name, via=via)


SUBJECT_LABELS = [
    "Date",
    "Recipient",
    "Purpose",
    "Agreement",
    "Lawful basis",
    "Gateway",
    "Approval",
    "Fields",
    "Retention",
    "Source file",
]
HELD_LABELS = ["Census", "Source file", "Current", "Data held"]


def _subject_rows(shares: list[Json]) -> list[list[object]]:
    return [
        [
            s["date"],
            s["recipient"],
            s["purpose"],
            s["agreement"],
            s["lawful_basis"],
            s["legal_gateway"] or "-",
            s["approval"] or "-",
            ", ".join(s["fields"]),
            f"{s['retention_days']} days (until {s['retain_until']})" if s.get("retention_days") else "-",
            "{file} ({term} {year}, sha256 {sha256})".format(**s["source"]),
        ]
        for s in shares
    ]


def _held_rows(data: list[Json]) -> list[list[object]]:
    return [
        [
            d["census"],
            "{file} (sha256 {sha256})".format(**d["source"])
            + (" - erased since, see tombstone" if d["source"]["erased"] else ""),
            "yes" if d["current"] else "superseded",
            "; ".join(f"{k}: {v}" for k, v in d["values"].items() if v not in (None, "")),
        ]
        for d in data
    ]


def _subject_access_pdf(request: Request, result: Json) -> bytes:
    settings = viewer_of(request).settings
    intro = [
        f"Local authority {settings.la}: a pupil's census data and its recipients (UK GDPR Art 15).",
        "Attach this document to your reply to the family.",
        f"Children found: {len(result['pupils'])}.",
    ]
    sections: list[tuple[str, list[str], list[list[object]]]] = []
    for number, child in enumerate(result["pupils"], start=1):
        sections.append((f"Child {number}: data held", HELD_LABELS, _held_rows(child["data"])))
        sections.append((f"Child {number}: shares", SUBJECT_LABELS, _subject_rows(child["shares"])))
    return pdf("Subject access response", intro, sections)


# Article 30 -------------------------------------------------------------------------------------------
@router.get("/article-30", name="article30")
def article30_page(request: Request, user: PageUser) -> HTMLResponse:
    from censustrace.compliance.article30 import record_of_processing, table

    record = record_of_processing(viewer_of(request).settings)
    sections = {name: table(record, name) for name in ("activities", "refused", "planned")}
    return _render(request, "article30.html", user, record=record, sections=sections)


@router.get("/article-30.{fmt}", name="article30_file")
def article30_file(request: Request, user: PageUser, fmt: Literal["csv", "pdf"]) -> Response:
    from censustrace.compliance.article30 import record_of_processing
    from censustrace.compliance.article30 import to_csv as record_csv
    from censustrace.compliance.article30 import to_pdf as record_pdf

    require(user, "export", "export the record of processing")
    record = record_of_processing(viewer_of(request).settings)
    _log(request, user, "export", f"article30.{fmt}", len(record["activities"]))
    if fmt == "csv":
        return _download(record_csv(record), "text/csv; charset=utf-8", "record-of-processing.csv")
    return _download(record_pdf(record), "application/pdf", "record-of-processing.pdf")


def share_charts(request: Request) -> Json | None:
    """Charts for the overview, or None before any share exists."""
    rows = register(viewer_of(request).settings)
    if not rows:
        return None
    data = charts_data(rows)
    return {
        "per_month": stacked_columns(
            data["months"], data["series"], label="Shares delivered per month, by recipient"
        ),
        "excluded": bar_chart(
            data["excluded"], label="Pupils excluded from shares, by reason", unit="pupils"
        ),
        "data": data,
    }


# JSON API ---------------------------------------------------------------------------------------------
@api.get("/shares", summary="The share register: every share and blocked attempt, filtered, sorted, paged")
def api_shares(
    request: Request,
    user: ApiUser,
    status: Text = "",
    recipient: Text = "",
    purpose: Text = "",
    q: Text = "",
    sort: Text = "date",
    order: Text = "desc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Json:
    query = RegisterQuery(status, recipient, purpose, q, sort if sort in SORTS else "date", order != "asc")
    rows, total = register_page(viewer_of(request).settings, query, limit=limit, offset=offset)
    return {"shares": rows, "totalCount": total, "limit": limit, "offset": offset}


@api.get("/shares/{share_id}", summary="One share: agreement, recipient, counts, fields and transforms")
def api_share(request: Request, user: ApiUser, share_id: str) -> Json:
    share = _share_or_404(request, share_id)
    return {**share.summary(), "columns": column_view(share), "excluded": dict(share.excluded or {})}


@api.get("/shares/{share_id}/trace", summary="A share's released file traced back to the received files")
def api_share_trace(request: Request, user: ApiUser, share_id: str) -> Json:
    share = _share_or_404(request, share_id)
    found = _share_trace(request, share)
    if found is None:
        raise PageNotFound("this share released no file, or its lineage is not in the store")
    return {"share_id": share.share_id, "target": found["start"], "sources": found["sources"]}


class DisclosureSearch(BaseModel):
    upn: str = Field(
        max_length=64, description="The pupil's current or former UPN (spaces and case normalised)"
    )


class NameSearch(BaseModel):
    surname: str = Field(max_length=100, description="Legal, preferred or former surname")
    forename: str = Field(max_length=100)
    dob: str = Field(max_length=10, description="Date of birth, YYYY-MM-DD")


@api.post(
    "/disclosures/search",
    summary="Subject access by current or former UPN: data held, sources, every delivered share",
    responses={
        403: {"description": "Role may not look up pupils (logged)"},
        422: {"description": "Not a UPN"},
    },
)
def api_disclosures(request: Request, user: ApiUser, body: DisclosureSearch) -> Json:
    _may_look_up(request, user)
    try:
        upn = normalise_upn(body.upn)
    except UpnRejected:
        _log(request, user, "subject_access", "subject_access.api", None, outcome="rejected")
        raise
    result = _lookup_upn(request, user, upn, "api")
    _log(request, user, "subject_access", "subject_access.api", len(result["shares"]), upn=upn)
    return result


@api.post(
    "/disclosures/search-by-name",
    summary="Subject access by name and date of birth (compliance only): one answer per child found",
    responses={
        403: {"description": "Role may not look up pupils by name (logged)"},
        422: {"description": "Missing name or not a date"},
    },
)
def api_disclosures_by_name(request: Request, user: ApiUser, body: NameSearch) -> Json:
    from censustrace.compliance.subject import LookupRejected, NameDob

    _may_look_up(request, user)
    if not user.can("export_pupil_data"):
        _log(request, user, "subject_access", "subject_access.api_name", None, outcome="denied")
        require(user, "export_pupil_data", "look a pupil up by name and date of birth")
    try:
        who = NameDob.parse(body.surname, body.forename, body.dob)
    except LookupRejected as rejected:
        _log(request, user, "subject_access", "subject_access.api_name", None, outcome="rejected")
        raise UpnRejected(rejected.message, code=rejected.code) from None  # a 422 like a bad UPN
    result = _lookup_name(request, user, who, "api")
    _log(
        request,
        user,
        "subject_access",
        "subject_access.api_name",
        sum(len(p["shares"]) for p in result["pupils"]),
    )
    return result
