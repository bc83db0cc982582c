"""Prometheus metrics, with prometheus-client (multiprocess mode under gunicorn: every worker writes
its samples to PROMETHEUS_MULTIPROC_DIR, and /metrics adds them up).

prometheus-client is imported, and the metric objects made, on first use and not at import: the
library picks its storage (in memory, or files for multiprocess mode) when it is first imported, and
the multiprocess directory is set only when ``referee serve`` starts. Labels are bounded: endpoints,
results, statuses and caches; never images or namespaces. The results of
``referee_admission_decisions_total``: allowed, denied, audit (admitted in audit mode with the
reasons as warnings), patched, unchanged, answered, system_error, forbidden, bad_request.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram


@dataclass(frozen=True)
class Metrics:
    decisions: Counter
    verify_seconds: Histogram
    registry_requests: Counter
    cache: Counter
    shared_cache: Counter
    in_flight: Gauge
    certificate_expiry: Gauge


_lock = threading.Lock()
_made: list[Metrics] = []


def metrics() -> Metrics:
    """The metric objects, made once per process (thread-safe: threads race to the first call)."""
    if _made:
        return _made[0]
    with _lock:
        if not _made:
            _made.append(_make())
        return _made[0]


def _make() -> Metrics:
    import prometheus_client as prom  # noqa: PLC0415 (see the module docstring)

    return Metrics(
        decisions=prom.Counter(
            "referee_admission_decisions_total", "Admission answers", ["endpoint", "result"]
        ),
        verify_seconds=prom.Histogram(
            "referee_image_verification_seconds",
            "Time to decide one image (cache hits included)",
            ["outcome"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        ),
        registry_requests=prom.Counter(
            "referee_registry_requests_total", "Registry HTTP answers", ["method", "status"]
        ),
        cache=prom.Counter("referee_cache_lookups_total", "Verdict cache lookups", ["cache", "result"]),
        shared_cache=prom.Counter(
            "referee_shared_cache_total", "Shared cache (Redis) lookups", ["kind", "result"]
        ),
        in_flight=prom.Gauge(
            "referee_verifications_in_flight", "Signature verifications running", multiprocess_mode="livesum"
        ),
        certificate_expiry=prom.Gauge(
            "referee_tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate on disk expires (Unix time)",
            multiprocess_mode="livemostrecent",
        ),
    )


def exposition() -> tuple[bytes, str]:
    """The text exposition of every worker's metrics (or this process's, outside gunicorn)."""
    import prometheus_client as prom  # noqa: PLC0415 (see the module docstring)
    from prometheus_client import multiprocess  # noqa: PLC0415

    metrics()  # every family appears, even before its first sample
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
    return prom.generate_latest(prom.REGISTRY), prom.CONTENT_TYPE_LATEST
