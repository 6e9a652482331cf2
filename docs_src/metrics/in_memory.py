"""Read the cache's metrics in memory, as a test does: a meter provider of its own."""

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from sqlmodel_cache.otel import instrument

reader = InMemoryMetricReader()
instrument(meter_provider=MeterProvider(metric_readers=[reader]))


def hits_by_model() -> dict[str, int | float]:
    """What ``sqlmodel_cache.hits`` says now, by model."""
    hits: dict[str, int | float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "sqlmodel_cache.hits":
                    for point in metric.data.data_points:
                        if isinstance(point, NumberDataPoint) and point.attributes:
                            hits[str(point.attributes["model"])] = point.value
    return hits
