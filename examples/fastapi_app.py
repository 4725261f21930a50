"""A FastAPI app whose routes declare their purposes (run: ``uvicorn examples.fastapi_app:app``).

``GET /applicants/{id}`` runs under ``recruitment.selection`` and may be asked, by a trusted caller
with a signed claim, to run under ``marketing`` instead; the accessor then refuses, because the
applicant's data was collected for recruitment only. ``python examples/fastapi_app.py`` shows both.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import purposeguard as pg
from purposeguard.middleware import HMACClaimVerifier, purposes, sign_claim
from purposeguard.middleware.asgi import PurposeMiddleware

KEY = os.environ.get("CLAIM_KEY", "example-claim-key-change-me")
SERVICE = "applicants-svc"  # the name callers sign claims for (the audience)
pg.configure(policy=Path(__file__).with_name("policy.yaml"))


@pg.accessor(collected_for=("recruitment",))
def load_applicant(applicant_id: str) -> dict[str, str]:
    """Personal data collected for recruitment."""
    return {"id": applicant_id, "email": f"{applicant_id}@example.com"}


app = FastAPI()
app.add_middleware(
    PurposeMiddleware,
    routes={"/inquiries/{id}": "inquiry"},  # a mapping, or mark the endpoint as below
    verifier=HMACClaimVerifier(KEY, audience=SERVICE),
)


@app.exception_handler(pg.PurposeViolation)
async def violation(request: Request, exc: pg.PurposeViolation) -> JSONResponse:
    return JSONResponse({"error": "purpose_violation", "reason": exc.reason}, status_code=403)


@app.get("/applicants/{applicant_id}")
@purposes("recruitment.selection", "marketing")
async def applicant(applicant_id: str) -> dict[str, str]:
    return load_applicant(applicant_id)


@app.get("/inquiries/{id}")
async def inquiry(id: str) -> dict[str, str | None]:
    return {"id": id, "purpose": pg.current_purpose()}


async def _demo() -> None:
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://example"
    ) as client:
        ok = await client.get("/applicants/a1")
        claim = sign_claim("marketing", KEY, audience=SERVICE)
        blocked = await client.get(
            "/applicants/a1", headers={"baggage": f"purposeguard.purpose={claim}"}
        )
    print(ok.status_code, ok.json())
    print(blocked.status_code, blocked.json())
    assert (ok.status_code, blocked.status_code) == (200, 403)


if __name__ == "__main__":
    asyncio.run(_demo())
