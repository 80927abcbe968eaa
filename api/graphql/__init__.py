"""The GraphQL schema: one module per area, assembled in :mod:`api.graphql.schema`.

- :mod:`api.graphql.login`: ``login``, ``refreshToken``, ``logout``, ``me``,
  ``sessions``, ``endSession``.
- :mod:`api.graphql.operators`: operators and the plant mode.
- :mod:`api.graphql.devices`: ``devices`` and ``tagUpdates`` (live state).
- :mod:`api.graphql.commands`: requesting, confirming, approving, declining and
  cancelling commands, ``command``, ``commandTimeline`` and ``commandStatus``.
- :mod:`api.graphql.alarms`: alarms, their journal, KPIs, events and actions.
- :mod:`api.graphql.audit`: ``auditEvents``.
- :mod:`api.graphql.error_codes`: the domain-error → ``extensions.code`` mapping.
"""
