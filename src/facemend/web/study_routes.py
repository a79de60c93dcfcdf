"""The study page's API: sign in with a personal link, next trial, option images, votes.

A rater is known only by the token of their personal link (issued by `facemend study create`
or `facemend study raters --add`): the page sends it once to `POST /api/study/signin`, which sets
it as an HttpOnly cookie; `next` and `votes` take the rater from that cookie alone (a vote's body
has no rater field, and no query parameter names a rater). Without a cookie they answer 401, with
a token the study does not list 403. A second vote on the same trial answers 409 (the first vote
counts). Images are served from the study file by integer trial and position only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Cookie
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from facemend.web.study import (
    MAX_TRIAL,
    DuplicateVoteError,
    StudyError,
    UnknownRaterError,
    next_trial,
    rater_for_token,
    record_vote,
)
from facemend.web.study import trial_image as _trial_image

COOKIE = "facemend_rater"
COOKIE_AGE_S = 180 * 86400


class SignIn(BaseModel):
    """The token from a rater's personal link."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(max_length=128)


class VoteIn(BaseModel):
    """A rater's choice: option `position` (0-based, as shown) of `trial`."""

    model_config = ConfigDict(extra="forbid")  # a "rater" field is refused, not obeyed
    trial: int = Field(ge=1, le=MAX_TRIAL)
    position: int = Field(ge=0, le=63)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _media_type(data: bytes) -> str:
    """PNG or JPEG from the file's magic bytes (the study stores evaluate's files as they are)."""
    return "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"


def _with_links(info: dict[str, Any]) -> dict[str, Any]:
    t = info["trial"]
    info["images"] = ([f"/api/study/trials/{t}/options/{i}" for i in range(info["options"])]
                      if t is not None else [])
    info["reference_url"] = f"/api/study/trials/{t}/reference" if info["reference"] else None
    return info


def study_router(study: str | Path) -> APIRouter:
    """Routes under /api/study for one study file."""
    router = APIRouter(prefix="/api/study", tags=["study"])

    def rater_of(cookie: str | None) -> str:
        if not cookie:
            raise PermissionError("not signed in: open the personal study link you were given")
        return rater_for_token(study, cookie)

    @router.post("/signin", summary="Sign in with the token of a personal study link",
                 responses={403: {"description": "token not issued by this study"}})
    def signin(s: SignIn) -> Any:
        try:
            info = _with_links(next_trial(study, rater_for_token(study, s.token)))
        except UnknownRaterError as e:
            return _error(403, str(e))
        resp = JSONResponse(info)
        resp.set_cookie(COOKIE, s.token, max_age=COOKIE_AGE_S, httponly=True, samesite="strict",
                        path="/")
        return resp

    @router.get("/next", summary="The signed-in rater's next unvoted trial and progress",
                responses={401: {"description": "no study link opened"},
                           403: {"description": "token not issued by this study"}})
    def next_(facemend_rater: str | None = Cookie(None)) -> Any:
        try:
            return _with_links(next_trial(study, rater_of(facemend_rater)))
        except PermissionError as e:
            return _error(401, str(e))
        except StudyError as e:
            return _error(403, str(e))

    @router.post("/votes", status_code=201, summary="Record a vote of the signed-in rater",
                 responses={401: {"description": "no study link opened"},
                            403: {"description": "token not issued by this study"},
                            409: {"description": "this rater already voted on this trial"}})
    def vote(v: VoteIn, facemend_rater: str | None = Cookie(None)) -> Any:
        try:
            return record_vote(study, rater_of(facemend_rater), v.trial, v.position)
        except PermissionError as e:
            return _error(401, str(e))
        except UnknownRaterError as e:
            return _error(403, str(e))
        except DuplicateVoteError as e:
            return _error(409, str(e))
        except StudyError as e:
            return _error(404, str(e))

    def image(trial: int, position: int | None) -> Response:
        try:
            data = _trial_image(study, trial, position)
        except StudyError as e:
            return _error(404, str(e))
        return Response(data, media_type=_media_type(data),
                        headers={"Cache-Control": "private, max-age=3600"})

    @router.get("/trials/{trial}/options/{position}", summary="Option image of a trial")
    def option(trial: int = PathParam(ge=1, le=MAX_TRIAL),
               position: int = PathParam(ge=0, le=63)) -> Response:
        return image(trial, position)

    @router.get("/trials/{trial}/reference", summary="Degraded input of a trial")
    def reference(trial: int = PathParam(ge=1, le=MAX_TRIAL)) -> Response:
        return image(trial, None)

    return router
