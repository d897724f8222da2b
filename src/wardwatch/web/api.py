"""(being written)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()


def install_problem_handlers(app: object) -> None:
    """RFC 7807 problem details for every error (being written)."""
