"""Per-request overhead of the ASGI PurposeMiddleware, in-process.

A small FastAPI app (a few routes, a path parameter, a JSON response) is driven directly with a
synthetic scope/receive/send, with and without the middleware (routes declared by mapping and by
``purposes()``, a policy configured). The ratio is min-of-repeats time per request with the
middleware over the same without it; budget 1.05. FastAPI's ``add_middleware`` stack has a cost
of its own (a no-op middleware added that way costs ~20% here), so there are two rows: the
middleware wrapping the app vs the bare app, and the middleware added with ``add_middleware`` vs
a no-op middleware added the same way. Where valgrind is installed, a full run also counts the
instructions per request under callgrind: that ratio does not move with the load of a shared
machine, which the timed one does by about the size of this budget.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import purposeguard as pg
from purposeguard.middleware import purposes
from purposeguard.middleware.asgi import PurposeMiddleware

from ._timing import instructions

POLICY = Path(__file__).resolve().parent.parent / "examples" / "policy.yaml"


class _Noop:
    """A pure ASGI middleware that does nothing: the cost of being in the middleware stack."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def _app(with_middleware: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/applicants/{applicant_id}")
    @purposes("recruitment.selection", "audit")
    async def applicant(applicant_id: str) -> dict[str, str | None]:
        return {"id": applicant_id, "purpose": pg.current_purpose()}

    @app.get("/inquiries/{inquiry_id}")
    async def inquiry(inquiry_id: int) -> dict[str, int]:
        return {"id": inquiry_id}

    routes = {"/inquiries/{inquiry_id}": "inquiry"}
    if with_middleware == "added":
        app.add_middleware(PurposeMiddleware, routes=routes)
    elif with_middleware == "noop":
        app.add_middleware(_Noop)
    elif with_middleware == "wrapped":
        return PurposeMiddleware(app, routes=routes)
    return app


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "headers": [(b"host", b"example"), (b"user-agent", b"bench"), (b"accept", b"*/*"),
                    (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    }  # fmt: skip


async def _drive(app: Any, n: int) -> float:
    paths = ["/applicants/a1", "/inquiries/7", "/applicants/b2", "/inquiries/9"]
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: dict[str, Any]) -> None:
        pass

    # warm-up: builds the middleware stack, installs the route wrappers
    for p in paths:
        await app(_scope(p), receive, send)
    start = time.perf_counter()
    for i in range(n):
        await app(_scope(paths[i & 3]), receive, send)
    return (time.perf_counter() - start) / n


def run(quick: bool) -> list[dict[str, Any]]:
    """Rows ``{"name", "ratio", "budget", "baseline", "ns_per_call", "baseline_ns"}``: a request
    through the middleware against the same request without it."""
    pg.configure(policy=POLICY)
    # many short interleaved batches, the collector off: the minimum of each is the cost of a
    # request undisturbed by the neighbours of a shared machine or by a collection
    n, repeats = (100, 30) if quick else (200, 100)
    apps = {k: _app(k) for k in ("bare", "wrapped", "noop", "added")}
    loop = asyncio.new_event_loop()
    gc_was_enabled = gc.isenabled()
    try:
        times: dict[str, list[float]] = {k: [] for k in apps}
        for _ in range(repeats):
            gc.collect()
            gc.disable()
            for k, app in apps.items():
                times[k].append(loop.run_until_complete(_drive(app, n)))
            if gc_was_enabled:
                gc.enable()
    finally:
        loop.close()
        if gc_was_enabled:
            gc.enable()
    best = {k: min(v) for k, v in times.items()}
    rows = [
        {
            "name": "asgi middleware per request, wrapping a FastAPI app (vs the bare app)",
            "ratio": round(best["wrapped"] / best["bare"], 4),
            "budget": 1.05,
            "baseline": "the same FastAPI app without it",
            "ns_per_call": round(best["wrapped"] * 1e9),
            "baseline_ns": round(best["bare"] * 1e9),
        },
        {
            "name": "asgi middleware per request, via add_middleware (vs a no-op middleware)",
            "ratio": round(best["added"] / best["noop"], 4),
            "budget": 1.05,
            "baseline": "the same app with a no-op middleware added the same way",
            "ns_per_call": round(best["added"] * 1e9),
            "baseline_ns": round(best["noop"] * 1e9),
        },
    ]
    if not quick and shutil.which("valgrind"):
        rows.append(_instruction_row())
    return rows


# Timing on a shared machine moves by a few percent between runs, the size of this budget; the
# number of instructions executed does not. callgrind counts them (CPU-independent, repeatable):
# a request's cost is the difference between a run of N requests and a run of none.


def _instructions(kind: str, n: int) -> int:
    return instructions("bench_middleware", kind, str(n))


def _instruction_row(n: int = 300) -> dict[str, Any]:
    per = {k: (_instructions(k, n) - _instructions(k, 0)) / n for k in ("bare", "wrapped")}
    return {
        "name": "asgi middleware per request, instructions (callgrind)",
        "ratio": round(per["wrapped"] / per["bare"], 4),
        "budget": 1.05,
        "baseline": "instructions per request of the same FastAPI app without it",
        "ns_per_call": None,
    }


def _drive_only(kind: str, n: int) -> None:
    pg.configure(policy=POLICY)
    app = _app(kind)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(_drive(app, 20))  # warm-up: the same in every run
    if n:
        loop.run_until_complete(_drive(app, n))
    loop.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--drive"]:
        _drive_only(sys.argv[2], int(sys.argv[3]))
    else:
        for row in run(quick=False):
            print(row)
