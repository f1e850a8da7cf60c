"""`/metrics` in the Prometheus text format (prometheus_client), one registry per app.

metersync_messages_total{endpoint, outcome, code}   enroll/reports: accepted or refused by code
metersync_ingest_seconds{endpoint}                  time from request to answer (histogram)
metersync_in_flight                                 ingest messages being processed now
metersync_channels_open                             agents holding a channel
metersync_database_errors_total                     answers 503 because the database failed
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self, channels_open: Callable[[], int], in_flight: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "metersync_messages",
            "Ingest messages answered, by endpoint, outcome and MeterSync error code (0: none)",
            ["endpoint", "outcome", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "metersync_ingest_seconds",
            "Seconds from an ingest request to its answer",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.database_errors = Counter(
            "metersync_database_errors", "Answers 503 because the database failed", registry=r
        )
        Gauge("metersync_channels_open", "Agents holding a channel", registry=r).set_function(
            channels_open
        )
        Gauge("metersync_in_flight", "Ingest messages being processed", registry=r).set_function(
            in_flight
        )

    def answered(self, endpoint: str, status: int, code: int | None, seconds: float) -> None:
        outcome = "accepted" if status == 200 else "refused"
        self.messages.labels(endpoint, outcome, str(code or 0)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
