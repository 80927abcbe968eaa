"""The FastAPI application: ``/graphql`` (HTTP and graphql-transport-ws), ``/health``
and ``/metrics`` (Prometheus), behind the bounds on what a client may send
(:mod:`api.size_limits`).

:func:`create_app` only wires routes to the :class:`~api.services.Services` it
is given; it starts and stops nothing. The composition root owns the
connections and the background tasks (log tail, dispatcher, sweeper).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.context import make_context_getter
from api.graphql.schema import build_schema
from api.services import Services
from api.size_limits import SizeLimits


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="plantcore", docs_url=None, redoc_url=None)
    app.add_middleware(
        SizeLimits,
        max_body_bytes=services.max_body_bytes,
        max_message_bytes=services.max_ws_message_bytes,
    )
    schema = build_schema(
        max_depth=services.max_query_depth,
        max_cost=services.max_query_cost,
        max_variables_bytes=services.max_variables_bytes,
    )
    graphql: GraphQLRouter[Any, None] = _Router(
        schema,
        context_getter=make_context_getter(services),
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
    )
    app.include_router(graphql, prefix="/graphql")

    @app.get("/health")
    async def health() -> JSONResponse:
        """Each service ``ok`` or ``error`` with the reason; HTTP 503 when any is down."""
        report = await check_health(services)
        healthy = all(entry["status"] == "ok" for entry in report.values())
        body = {"status": "ok" if healthy else "error", "services": report}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        """The plant's figures in the Prometheus text format (see docs/metrics.md)."""
        registry = services.metrics or CollectorRegistry()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Router(GraphQLRouter[Any, None]):
    def decode_json(self, data: str | bytes) -> object:
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as exc:
            # Python reads no integer of more than 4300 digits, nor arrays nested past its
            # recursion limit: to the API that is malformed JSON (HTTP 400, WebSocket 4400).
            raise json.JSONDecodeError(str(exc), "", 0) from exc


async def check_health(services: Services) -> dict[str, dict[str, str]]:
    async def postgres() -> None:
        await services.store_executor.call(services.app.recorder.max_notification_id)

    async def nats() -> None:
        if not services.nats.is_connected:
            raise ConnectionError("not connected")
        await services.nats.flush(timeout=math.ceil(services.health_timeout))

    async def redis() -> None:
        await services.redis.ping()

    names = ("postgresql", "nats", "redis")
    results = await asyncio.gather(
        *(_probe(check(), services.health_timeout) for check in (postgres, nats, redis))
    )
    return dict(zip(names, results, strict=True))


async def _probe(check: Awaitable[None], seconds: float) -> dict[str, str]:
    try:
        async with asyncio.timeout(seconds):
            await check
    except TimeoutError:
        return {"status": "error", "detail": f"no answer within {seconds:g} s"}
    except Exception as exc:  # any failure of a probe is that service's report, not ours
        return {"status": "error", "detail": f"{type(exc).__name__}: {exc}"}
    return {"status": "ok", "detail": ""}
