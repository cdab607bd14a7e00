"""The long-running agent's numbers, and ``--metrics-port``: Prometheus text on localhost.

:class:`Stats` is plain data the loop always keeps (it costs nothing);
:func:`serve` exposes it, and only then is ``prometheus_client`` imported, so an
agent without the flag pays nothing for it at start. Loopback only: the numbers
name no secret, but nothing outside the pod has any business with them.

    latchkey_agent_renders_total                      passes that read and wrote
    latchkey_agent_failures_total{error="..."}        failed passes, by error class
    latchkey_agent_last_success_timestamp_seconds     end of the last good pass
    latchkey_agent_earliest_lease_expiry_timestamp_seconds   soonest lease end
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import msgspec

from sidecar.errors import ConfigError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PREFIX = "latchkey_agent"
HOST = "127.0.0.1"


class Stats(msgspec.Struct):
    """What the loop counts; wall-clock epoch seconds, as Prometheus expects."""

    renders: int = 0
    failures: dict[str, int] = msgspec.field(default_factory=dict)
    last_success: float | None = None
    earliest_lease_expiry: float | None = None

    def failed(self, error: Exception) -> None:
        name = type(error).__name__
        self.failures[name] = self.failures.get(name, 0) + 1

    def succeeded(self, *, at: float, lease_ends: Iterable[float]) -> None:
        self.renders += 1
        self.last_success = at
        self.earliest_lease_expiry = min(lease_ends, default=None)


def families(stats: Stats) -> Iterator[Metric]:
    """The metric families for one scrape; gauges with no value yet are left out."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield CounterMetricFamily(
        f"{PREFIX}_renders", "Passes that read the store and wrote files.", value=stats.renders
    )
    failures = CounterMetricFamily(
        f"{PREFIX}_failures", "Passes that failed, by error class.", labels=["error"]
    )
    for name, count in sorted(dict(stats.failures).items()):
        failures.add_metric([name], count)
    yield failures
    gauges = {
        "last_success_timestamp_seconds": ("End of the last good pass.", stats.last_success),
        "earliest_lease_expiry_timestamp_seconds": (
            "When the soonest lease held ends.",
            stats.earliest_lease_expiry,
        ),
    }
    for name, (doc, value) in gauges.items():
        if value is not None:
            yield GaugeMetricFamily(f"{PREFIX}_{name}", doc, value=value)


def serve(stats: Stats, *, port: int) -> Callable[[], None]:
    """Serve ``stats`` on ``127.0.0.1:port`` from a daemon thread; returns the stopper."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.registry import Collector

    class StatsCollector(Collector):
        def collect(self) -> Iterable[Metric]:
            return list(families(stats))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector())
    try:
        server, thread = start_http_server(port, addr=HOST, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"--metrics-port {port}: cannot listen on {HOST}: {exc.strerror}"
        ) from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
