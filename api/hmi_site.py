"""The operator's HMI at ``/`` and the offline GraphQL explorer, served from ``hmi/static``.

The HMI is plain files: ``index.html``, its ES modules (``js/``), one style sheet
and the third-party code it uses, vendored from a pinned npm lock file
(``hmi/vendor.sh``; docs/hmi.md). Nothing is built or fetched at run time. The
explorer page replaces strawberry's GraphiQL page, whose scripts come from a CDN
and which stays at "Loading..." on a plant network without internet.
"""

from __future__ import annotations

from pathlib import Path

from starlette.staticfiles import StaticFiles
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # A socket to a path other than /graphql: refused, as without the mount.
            await send({"type": "websocket.close", "code": 1000})
            return
        await super().__call__(scope, receive, send)
