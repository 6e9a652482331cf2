"""Export the cache's metrics with OpenTelemetry: here to the console, every minute and at exit."""

import os

import redis
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

from sqlmodel_cache import SQLModelCache
from sqlmodel_cache.otel import instrument
from sqlmodel_cache.transport import RedisSyncTransport

# The application's meter provider, with the exporter of its choice (OTLP, Prometheus, ...).
reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), export_interval_millis=60_000)
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
SQLModelCache.configure(transport=RedisSyncTransport(client))
instrument()  # once, at start-up: exports through the global meter provider set above
