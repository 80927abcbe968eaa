"""``GET /health``: up or down for anyone, each service's state for those who run the plant.

A load balancer or a monitor needs only the answer (``{"status": "ok"}``,
HTTP 200, or ``{"status": "error"}``, HTTP 503). Which service is down, and
its error (a host name, a port, a driver's message), helps whoever attacks the
plant as much as whoever runs it: it is added for a valid token whose roles
hold ``health.read`` (admin, supervisor, auditor: :mod:`domain.permissions`).
Any other request, with no token, a bad one or one of another role, gets the
short answer; none of them is a refusal, so nothing is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable
from typing import Any

from graphql import GraphQLError

from api.context import PlantContext
from api.services import Services
from domain.permissions import Action, actions_of

log = logging.getLogger(__name__)


async def health(services: Services, authorization: str | None, source: str) -> tuple[Any, int]:
    """The body and the HTTP status of ``/health`` for a request with ``authorization``."""
    report, detailed = await asyncio.gather(
        check_health(services), _may_read_details(services, authorization, source)
    )
    healthy = all(entry["status"] == "ok" for entry in report.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "error"}
    if detailed:
        body["services"] = report
    return body, 200 if healthy else 503


async def _may_read_details(services: Services, authorization: str | None, source: str) -> bool:
    if authorization is None:
        return False
    context = PlantContext(services, authorization, source)
    try:
        async with asyncio.timeout(services.health_timeout):
            caller = await context.caller()
    except GraphQLError:
        return False  # no valid token or session: the short answer
    except Exception as exc:  # the store is down or slow: the token cannot be checked
        log.warning("/health could not check a token: %r", exc)
        return False
    return Action.READ_HEALTH in actions_of(caller.roles)


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
