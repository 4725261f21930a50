"""Stands in for a library you do not own; guarded by pg.guard_function in tests."""


def lookup_applicant(applicant_id: str) -> dict[str, str]:
    return {"id": applicant_id}


class Directory:
    @staticmethod
    def find(applicant_id: str) -> str:
        return applicant_id
