"""The study page's API: next trial for a rater, option images by (trial, position), votes.

The rater id comes from the `rater` query/body field or, failing that, the `facemend_rater`
cookie that the page sets. A second vote on the same trial answers 409 (the first vote counts).
Images are served from the study file by integer trial and position only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Cookie, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from facemend.web.study import DuplicateVoteError, StudyError, check_rater, next_trial, record_vote
from facemend.web.study import trial_image as _trial_image

COOKIE = "facemend_rater"


class VoteIn(BaseModel):
    """A rater's choice: option `position` (0-based, as shown) of `trial`."""

    trial: int = Field(ge=1)
    position: int = Field(ge=0, le=63)
    rater: str | None = Field(default=None, description="rater id (default: the cookie)")


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _media_type(data: bytes) -> str:
    """PNG or JPEG from the file's magic bytes (the study stores evaluate's files as they are)."""
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def study_router(study: str | Path) -> APIRouter:
    """Routes under /api/study for one study file."""
    router = APIRouter(prefix="/api/study", tags=["study"])

    def rater_of(rater: str | None, cookie: str | None) -> str:
        r = rater or cookie
        if not r:
            raise StudyError("rater id missing: enter one on the study page")
        return check_rater(r)

    @router.get("/next", summary="The rater's next unvoted trial and progress")
    def next_(rater: str | None = Query(None), facemend_rater: str | None = Cookie(None)) -> Any:
        try:
            r = rater_of(rater, facemend_rater)
            info = next_trial(study, r)
        except StudyError as e:
            return _error(400, str(e))
        t = info["trial"]
        info["images"] = ([f"/api/study/trials/{t}/options/{i}" for i in range(info["options"])]
                          if t is not None else [])
        info["reference_url"] = f"/api/study/trials/{t}/reference" if info["reference"] else None
        resp = JSONResponse(info)
        resp.set_cookie(COOKIE, r, max_age=180 * 86400, samesite="lax")
        return resp

    @router.post("/votes", status_code=201, summary="Record a vote",
                 responses={409: {"description": "this rater already voted on this trial"}})
    def vote(v: VoteIn, facemend_rater: str | None = Cookie(None)) -> Any:
        try:
            return record_vote(study, rater_of(v.rater, facemend_rater), v.trial, v.position)
        except DuplicateVoteError as e:
            return _error(409, str(e))
        except StudyError as e:
            return _error(400 if "rater" in str(e) else 404, str(e))

    def image(trial: int, position: int | None) -> Response:
        try:
            data = _trial_image(study, trial, position)
        except StudyError as e:
            return _error(404, str(e))
        return Response(data, media_type=_media_type(data),
                        headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/trials/{trial}/options/{position}", summary="Option image of a trial")
    def option(trial: int = PathParam(ge=1), position: int = PathParam(ge=0, le=63)) -> Response:
        return image(trial, position)

    @router.get("/trials/{trial}/reference", summary="Degraded input of a trial")
    def reference(trial: int = PathParam(ge=1)) -> Response:
        return image(trial, None)

    return router
