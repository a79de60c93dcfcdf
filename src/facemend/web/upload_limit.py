"""An ASGI wrapper that caps a route's request body while it is read (413 past the cap).

The Content-Length header is checked first; then every body chunk is counted as the app pulls it,
so a chunked upload (no Content-Length) or a body longer than it claims is cut off once it
passes the cap: the app sees the client as gone (nothing more is buffered or spooled to disk) and
the client gets 413 with a JSON `detail`. At most `max_bytes` of a body ever reaches the app.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadLimit:
    """Wrap `app`; requests to `path` may send at most `max_bytes` of body."""

    def __init__(self, app: ASGIApp, path: str, max_bytes: int, detail: str) -> None:
        self.app, self.path, self.max_bytes, self.detail = app, path, max_bytes, detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a "disconnect"; 413 is sent below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not over:
                raise
        if over and not started:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        resp: Any = JSONResponse({"detail": self.detail}, status_code=413,
                                 headers={"Connection": "close"})
        await resp(scope, receive, send)
