"""Errors: owns the library's exceptions, under one base class that callers can catch."""

from __future__ import annotations

__all__ = ["CacheError", "CircuitOpen", "ConfigurationError", "TransportError"]


class CacheError(Exception):
    """Base of every exception sqlmodel-cache raises."""


class ConfigurationError(CacheError):
    """The library, a model or a call is set up wrongly; the message says how to fix it."""


class TransportError(CacheError):
    """Redis could not serve a request.

    Raised by transports only; the sessions turn it into a cache miss (fail-open),
    so it never reaches application code through ``get()`` or ``commit()``.
    """


class CircuitOpen(TransportError):
    """Redis was not called: the circuit breaker is open after repeated failures."""
