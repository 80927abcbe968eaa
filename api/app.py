"""The FastAPI application: ``/graphql`` (HTTP and graphql-transport-ws), ``/health``
(:mod:`api.health`), ``/metrics`` (Prometheus) and the operator's HMI at ``/``
(:mod:`api.hmi_site`), behind the bounds on what a client may send
(:mod:`api.size_limits`) and the browser's security headers
(:mod:`api.security_headers`). The GraphQL explorer and introspection are served
only when the services say so.

:func:`create_app` only wires routes to the :class:`~api.services.Services` it
is given; it starts and stops nothing. The composition root owns the
connections and the background tasks (log tail, dispatcher, sweeper).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.context import make_context_getter
from api.graphql.schema import build_schema
from api.health import health
from api.hmi_site import HmiFiles, explorer_html
from api.security_headers import SecurityHeaders
from api.services import Services
from api.size_limits import SizeLimits
from api.socket_handler import KeyedSocketHandler


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="plantcore", docs_url=None, redoc_url=None)
    app.add_middleware(
        SizeLimits,
        max_body_bytes=services.max_body_bytes,
        max_message_bytes=services.max_ws_message_bytes,
    )
    app.add_middleware(SecurityHeaders)
    schema = build_schema(
        max_depth=services.max_query_depth,
        max_cost=services.max_query_cost,
        max_variables_bytes=services.max_variables_bytes,
        introspection=services.introspection,
    )
    graphql: GraphQLRouter[Any, None] = _Router(
        schema,
        context_getter=make_context_getter(services),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        # Without it, a browser's GET /graphql is answered 404.
        graphql_ide="graphiql" if services.graphiql else None,
    )
    app.include_router(graphql, prefix="/graphql")

    @app.get("/health")
    async def health_check(request: Request) -> JSONResponse:
        """Up or down (HTTP 503); each service's state for a token allowed ``health.read``."""
        source = request.client.host if request.client is not None else "unknown"
        body, status = await health(services, request.headers.get("authorization"), source)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics")
    async def metrics() -> Response:
        """The plant's figures in the Prometheus text format (see docs/metrics.md)."""
        registry = services.metrics or CollectorRegistry()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # Last: the HMI's files answer what no route above did.
    app.mount("/", HmiFiles(), name="hmi")
    return app


# What a close frame holds of its reason (RFC 6455 §5.5).
MAX_CLOSE_REASON_BYTES = 123


class _SocketAdapter(ASGIWebSocketAdapter):
    async def close(self, code: int, reason: str) -> None:
        # strawberry quotes what the client sent (an unknown message type, a syntax error's
        # token) in the reason: over 123 bytes, the close failed and the socket was dropped.
        cut = reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        await super().close(code, cut)


class _Router(GraphQLRouter[Any, None]):
    # Each operation over a socket authorised like a request; the socket closed at its expiry.
    graphql_transport_ws_handler_class = KeyedSocketHandler
    websocket_adapter_class = _SocketAdapter

    @property
    def graphql_ide_html(self) -> str:
        # GraphiQL from the plant core's own files, not strawberry's page, whose scripts
        # come from a CDN: on a plant network without internet it never loaded.
        return explorer_html()

    def decode_json(self, data: str | bytes) -> object:
        try:
            decoded = super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            # Python reads no integer of more than 4300 digits, nor arrays nested past its
            # recursion limit: to the API that is malformed JSON (HTTP 400, WebSocket 4400).
            raise json.JSONDecodeError(str(exc), "", 0) from exc
        if not isinstance(decoded, dict):
            # A request, and every graphql-transport-ws message, is an object (strawberry
            # reads fields of whatever it is given: ``null`` was a 500, a dropped socket).
            raise json.JSONDecodeError(f"a JSON {type(decoded).__name__}, not an object", "", 0)
        return decoded
