"""The access token a graphql-transport-ws connection is keyed with, and when it runs out.

A socket presents its token once, in ``connection_init``; every operation it
sends afterwards is checked against the token it is keyed with *at that
moment*. So the key changes when the client refreshes over the socket
(``refreshToken``), and it tells when the token it holds expires, for the
socket to be closed then.

A socket stays with the session it was first keyed with: subscriptions opened
under one session must not carry on under another's tokens. A socket opened
without a token takes the session of its first refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime

from api.credentials import InvalidToken, TokenSettings, bearer_token, verify_token
from support.clock import utc_now


def presented_token(connection_params: object) -> str | None:
    """The bearer token of a ``connection_init`` payload (``authorization``, either case)."""
    if not isinstance(connection_params, Mapping):
        return None
    value = connection_params.get("authorization") or connection_params.get("Authorization")
    return bearer_token(value) if isinstance(value, str) else None


class SocketKey:
    def __init__(self, tokens: TokenSettings) -> None:
        self._tokens = tokens
        self.token: str | None = None
        self._session: tuple[str, str] | None = None
        self._expires_at: datetime | None = None
        self._rekeyed = asyncio.Event()

    def takes(self, username: str, session_id: str) -> bool:
        """Whether a token of this session may key the socket."""
        return self._session in (None, (username, session_id))

    def key(self, token: str) -> None:
        """Key the socket with ``token``; :class:`InvalidToken` if it is refused now."""
        principal = verify_token(self._tokens, token)
        if not self.takes(principal.username, principal.session_id):
            raise InvalidToken("token of another session")
        self.token = token
        self._session = (principal.username, principal.session_id)
        self._expires_at = principal.expires_at
        self._rekeyed.set()

    async def expired(self) -> None:
        """Return once the token the socket is keyed with has expired, re-keys followed."""
        while True:
            self._rekeyed.clear()
            remaining = None
            if self._expires_at is not None:
                # The wall clock, as the tokens' own check (PyJWT) reads it.
                remaining = (self._expires_at - utc_now()).total_seconds()
                if remaining <= 0:
                    return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._rekeyed.wait()
