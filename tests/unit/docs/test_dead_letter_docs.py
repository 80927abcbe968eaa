"""Dead letters as documented: each kind and header in docs/nats.md, the metric in metrics.md."""

from __future__ import annotations

from pathlib import Path

from projections import dead_letter
from projections.dead_letter import RefusalKind

DOCS = Path(__file__).resolve().parents[3] / "docs"
HEADERS = (
    dead_letter.ORIGINAL_SUBJECT,
    dead_letter.ORIGINAL_STREAM,
    dead_letter.ORIGINAL_SEQUENCE,
    dead_letter.CONSUMER,
    dead_letter.REASON_KIND,
    dead_letter.REASON,
)


def test_nats_md_documents_the_stream_every_header_and_every_kind() -> None:
    nats_md = (DOCS / "nats.md").read_text(encoding="utf-8")
    assert f"## Stream `{dead_letter.DEADLETTER_STREAM}`" in nats_md
    assert f"### `{dead_letter.DEADLETTER_SUBJECT_PREFIX}.<consumer>`" in nats_md
    missing = [name for name in (*HEADERS, *RefusalKind) if f"| `{name}` |" not in nats_md]
    assert not missing, f"docs/nats.md lacks a row for {missing}"


def test_metrics_md_documents_the_dead_letter_counter_and_its_labels() -> None:
    metrics_md = (DOCS / "metrics.md").read_text(encoding="utf-8")
    assert (
        "| `plantcore_dead_lettered_messages_total` | counter | `consumer`, `kind` |" in metrics_md
    )
