"""A request the schema refuses before running it carries ``bad_request`` and is not logged.

GraphQL's request errors (the document does not parse or does not validate
against the schema, or its variables do not fit their types) are the client's:
anyone can send them, as often as they like, so they must neither reach the
server's log at ERROR nor come without a code. A fault of the server is still
logged, with its traceback.
"""

from __future__ import annotations

import logging

import pytest

from api.graphql.schema import BAD_REQUEST, build_schema

SCHEMA = build_schema()
JOURNAL = "query($s: DateTime!) { alarmJournal(since: $s, until: $s) { endCursor } }"
ALARMS = "query($d: String!) { alarms(device: $d) { tag } }"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        pytest.param("{ me { ", None, id="syntax"),
        pytest.param("{ me { usernam } }", None, id="unknown field"),
        pytest.param(
            'mutation { approveCommand(commandId: "x", code: 5) { status } }',
            None,
            id="literal of the wrong type",
        ),
        pytest.param(
            '{ alarmJournal(since: "2026-01-01T00:00:00Z") { endCursor } }',
            None,
            id="argument missing",
        ),
        pytest.param(
            '{ alarmJournal(since: "x", until: "y") { endCursor } }',
            None,
            id="literal the scalar refuses",
        ),
        pytest.param(JOURNAL, {"s": "not a time"}, id="variable the scalar refuses"),
        pytest.param(ALARMS, {"d": 5}, id="variable of the wrong type"),
        pytest.param(ALARMS, {}, id="variable missing"),
        pytest.param(ALARMS, {"d": None}, id="variable null"),
    ],
)
async def test_a_request_error_carries_bad_request_and_is_not_logged(
    query: str,
    variables: dict[str, object] | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    result = await SCHEMA.execute(query, variable_values=variables)

    assert result.data is None
    assert result.errors
    assert [(error.extensions or {}).get("code") for error in result.errors] == [BAD_REQUEST] * len(
        result.errors
    )
    assert [record.getMessage() for record in caplog.records] == []


async def test_a_fault_in_a_resolver_is_still_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # No request context: the resolver fails as a bug would.
    result = await SCHEMA.execute("{ plantMode { mode } }", context_value=None)

    assert result.errors
    assert [(error.extensions or {}).get("code") for error in result.errors] != [BAD_REQUEST]
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
