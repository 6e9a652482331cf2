"""TLS and AUTH: a rediss:// URL with the password, and the CA that signed the server's certificate."""

import redis

from sqlmodel_cache.transport import RedisSyncTransport


def tls_transport(
    url: str = "rediss://cache:secret@redis.internal:6380/0", ca_certs: str = "/etc/ssl/redis-ca.pem"
) -> RedisSyncTransport:
    client = redis.Redis.from_url(url, ssl_ca_certs=ca_certs)
    return RedisSyncTransport(client, timeout=0.1)
