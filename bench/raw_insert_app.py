"""The practical limit for ``bench_lineage.py --concurrent``: an endpoint that only inserts the raw
request body into one table (no parsing, no validation, no index), one autocommit INSERT per request,
served by the same uvicorn with the same worker count as the lineage API."""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine, insert, text
from starlette.concurrency import run_in_threadpool

metadata = MetaData()
raw = Table("raw", metadata, Column("id", Integer, primary_key=True), Column("body", Text, nullable=False))


def create_app() -> FastAPI:
    engine = create_engine(os.environ["RAW_INSERT_URL"], pool_size=20, max_overflow=0)
    with engine.begin() as conn:  # workers start together: one creates the table, the others wait
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
        metadata.create_all(conn, checkfirst=True)
    app = FastAPI()

    def store(body: str) -> None:
        with engine.begin() as conn:
            conn.execute(insert(raw).values(body=body))

    @app.post("/api/v1/lineage", status_code=201)
    async def post(request: Request) -> Response:
        await run_in_threadpool(store, (await request.body()).decode("utf-8"))
        return Response(status_code=201)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
