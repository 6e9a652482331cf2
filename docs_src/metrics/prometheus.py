"""Serve the cache's metrics to Prometheus, which scrapes http://<host>:9464/metrics."""

import os

import redis
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server

from sqlmodel_cache import SQLModelCache
from sqlmodel_cache.otel import instrument
from sqlmodel_cache.transport import RedisSyncTransport

start_http_server(port=int(os.environ.get("METRICS_PORT", "9464")))
metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))

client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
SQLModelCache.configure(transport=RedisSyncTransport(client))
instrument()
