"""The GraphQL schema: one module per area, assembled in :mod:`api.graphql.schema`.

- :mod:`api.graphql.login`: ``login``.
- :mod:`api.graphql.devices`: ``devices`` and ``tagUpdates`` (live state).
- :mod:`api.graphql.commands`: ``requestCommand``, ``confirmCommand``,
  ``cancelCommand``, ``command`` and ``commandStatus``.
- :mod:`api.graphql.error_codes`: the domain-error → ``extensions.code`` mapping.
"""
