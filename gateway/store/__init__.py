"""All Redis access: the key layout, pipelines and Lua scripts. No other module talks to Redis.

Keys that belong together share a Redis Cluster hash tag: `gw:pred:{<id>}` holds one prediction,
`gw:tenant:{<tenant>}:predictions` indexes a tenant's predictions by creation time; `gw:file:{<id>}` and
`gw:tenant:{<tenant>}:files` do the same for uploaded files.
"""

from gateway.store.files import FileStore, StoredFile
from gateway.store.keys import KeyStore, StoredKey
from gateway.store.predictions import PredictionStore, StoredPrediction
from gateway.store.queue import QueueStore
from gateway.store.redis import connect, mapped_errors
from gateway.store.schemas import SchemaStore
from gateway.store.secrets import shared_secret
from gateway.store.timeline import IndexEntry

__all__ = [
    "FileStore",
    "IndexEntry",
    "KeyStore",
    "PredictionStore",
    "QueueStore",
    "SchemaStore",
    "StoredFile",
    "StoredKey",
    "StoredPrediction",
    "connect",
    "mapped_errors",
    "shared_secret",
]
