"""All Redis access: the key layout, pipelines and Lua scripts. No other module talks to Redis.

Keys that belong together share a Redis Cluster hash tag: `gw:pred:{<id>}` holds one prediction,
`gw:tenant:{<tenant>}:predictions` indexes a tenant's predictions by creation time.
"""

from gateway.store.keys import KeyStore, StoredKey
from gateway.store.predictions import PredictionStore, StoredPrediction
from gateway.store.redis import connect, mapped_errors
from gateway.store.schemas import SchemaStore
from gateway.store.secrets import shared_secret

__all__ = [
    "KeyStore",
    "PredictionStore",
    "SchemaStore",
    "StoredKey",
    "StoredPrediction",
    "connect",
    "mapped_errors",
    "shared_secret",
]
