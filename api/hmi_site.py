"""The operator's HMI at ``/`` and the offline GraphQL explorer, served from ``hmi/static``.

The HMI is plain files: ``index.html``, its ES modules (``js/``), one style sheet
and the third-party code it uses, vendored from a pinned npm lock file
(``hmi/vendor.sh``; docs/hmi.md). Nothing is built or fetched at run time. The
explorer page replaces strawberry's GraphiQL page, whose scripts come from a CDN
and which stays at "Loading..." on a plant network without internet.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Receive, Scope, Send

HMI_DIRECTORY = Path(__file__).resolve().parents[1] / "hmi" / "static"
EXPLORER_PAGE = HMI_DIRECTORY / "explorer.html"


def explorer_html() -> str:
    """The GraphQL explorer's page: GraphiQL from the plant core's own files."""
    return EXPLORER_PAGE.read_text(encoding="utf-8")


class HmiFiles(StaticFiles):
    """The HMI's files; ``/`` is ``index.html``. Mounted last, so it answers what no route did."""

    def __init__(self) -> None:
        super().__init__(directory=HMI_DIRECTORY, html=True)

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        # Asked again at each load (answered 304 while unchanged): after an upgrade no
        # browser runs some modules of the old HMI with some of the new.
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # A socket to a path other than /graphql: refused, as without the mount.
            await send({"type": "websocket.close", "code": 1000})
            return
        await super().__call__(scope, receive, send)
