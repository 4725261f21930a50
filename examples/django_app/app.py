"""A one-file Django app whose URLs declare their purposes (``python examples/django_app/app.py``
shows a request under the declared purpose and a signed ``marketing`` claim the accessor refuses;
``python examples/django_app/app.py runserver`` serves it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django
from django.conf import settings

KEY = os.environ.get("CLAIM_KEY", "example-claim-key-change-me")
SERVICE = "applicants-svc"  # the name callers sign claims for (the audience)

if not settings.configured:
    settings.configure(
        DEBUG=True,
        SECRET_KEY="example-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["purposeguard.middleware.django.PurposeGuardMiddleware"],
        PURPOSEGUARD_WEB={
            "routes": {"inquiries/<str:id>/": "inquiry"},
            "verifier": f"{__name__}.verifier",
        },
    )
    django.setup()

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

import purposeguard as pg  # noqa: E402
from purposeguard.middleware import HMACClaimVerifier, purposes, sign_claim  # noqa: E402

pg.configure(policy=Path(__file__).resolve().parent.parent / "policy.yaml")
verifier = HMACClaimVerifier(KEY, audience=SERVICE)


@pg.accessor(collected_for=("recruitment",))
def load_applicant(applicant_id: str) -> dict[str, str]:
    """Personal data collected for recruitment."""
    return {"id": applicant_id, "email": f"{applicant_id}@example.com"}


@purposes("recruitment.selection", "marketing")
def applicant(request: HttpRequest, applicant_id: str) -> JsonResponse:
    try:
        return JsonResponse(load_applicant(applicant_id))
    except pg.PurposeViolation as exc:
        return JsonResponse({"error": "purpose_violation", "reason": exc.reason}, status=403)


def inquiry(request: HttpRequest, id: str) -> JsonResponse:
    return JsonResponse({"id": id, "purpose": pg.current_purpose()})


urlpatterns = [
    path("applicants/<str:applicant_id>/", applicant),
    path("inquiries/<str:id>/", inquiry),
]

if __name__ == "__main__":
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        execute_from_command_line(sys.argv)
    else:
        from django.test import Client

        client = Client()
        ok = client.get("/applicants/a1/")
        claim = sign_claim("marketing", KEY, audience=SERVICE)
        blocked = client.get("/applicants/a1/", HTTP_BAGGAGE=f"purposeguard.purpose={claim}")
        print(ok.status_code, ok.json())
        print(blocked.status_code, blocked.json())
        assert (ok.status_code, blocked.status_code) == (200, 403)
