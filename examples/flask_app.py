"""A Flask app whose routes declare their purposes (run: ``flask --app examples.flask_app run``).

``python examples/flask_app.py`` shows a request under the declared purpose and a signed claim for
``marketing`` that the accessor refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify

import purposeguard as pg
from purposeguard.middleware import HMACClaimVerifier, purposes, sign_claim
from purposeguard.middleware.wsgi import init_flask

KEY = os.environ.get("CLAIM_KEY", "example-claim-key-change-me")
SERVICE = "applicants-svc"  # the name callers sign claims for (the audience)
pg.configure(policy=Path(__file__).with_name("policy.yaml"))


@pg.accessor(collected_for=("recruitment",))
def load_applicant(applicant_id: str) -> dict[str, str]:
    """Personal data collected for recruitment."""
    return {"id": applicant_id, "email": f"{applicant_id}@example.com"}


app = Flask(__name__)


@app.errorhandler(pg.PurposeViolation)
def violation(exc: pg.PurposeViolation) -> tuple[Any, int]:
    return jsonify(error="purpose_violation", reason=exc.reason), 403


@app.get("/applicants/<applicant_id>")
@purposes("recruitment.selection", "marketing")
def applicant(applicant_id: str) -> Any:
    return jsonify(load_applicant(applicant_id))


@app.get("/inquiries/<id>")
def inquiry(id: str) -> Any:
    return jsonify(id=id, purpose=pg.current_purpose())


init_flask(
    app, routes={"/inquiries/<id>": "inquiry"}, verifier=HMACClaimVerifier(KEY, audience=SERVICE)
)

if __name__ == "__main__":
    client = app.test_client()
    ok = client.get("/applicants/a1")
    claim = sign_claim("marketing", KEY, audience=SERVICE)
    blocked = client.get("/applicants/a1", headers={"baggage": f"purposeguard.purpose={claim}"})
    print(ok.status_code, ok.json)
    print(blocked.status_code, blocked.json)
    assert (ok.status_code, blocked.status_code) == (200, 403)
