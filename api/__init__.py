"""The HTTP face of plantcore: FastAPI with a strawberry GraphQL schema.

- :mod:`api.app`: ``create_app(services)``, with ``/graphql`` (queries,
  mutations, graphql-transport-ws subscriptions) and ``/health``.
- :mod:`api.services`: what the API is handed by the composition root.
- :mod:`api.context`: the per-request context (caller, services).
- :mod:`api.credentials`: Argon2id passwords, JWT access tokens, TOTP codes.
- :mod:`api.size_limits`: the bounds on an HTTP body and a WebSocket message.
- :mod:`api.graphql`: the schema, one module per area.

The API reads live state from Redis and NATS and changes the plant only
through :class:`~domain.application.PlantApplication`, each call run on the
event store's executor.
"""
