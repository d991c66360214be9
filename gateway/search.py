"""Term search over the catalog: which models and collections a query names, and how well.

A query is split on whitespace into lowercase terms. Each term counts the weight of the best field it occurs in
(case-insensitive substring): 3 for a model's `owner/name` or a collection's slug or name, 2 for a model tag,
1 for a description. A result's score is the mean of its terms' counts, so 3.0 means every term is in the name and
a result no term occurs in (score 0) is left out. Results are ranked by score, best first, then by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from gateway.config import ModelConfig
from gateway.config_listing import CollectionConfig

NAME_WEIGHT = 3.0
TAG_WEIGHT = 2.0
TEXT_WEIGHT = 1.0

Item = TypeVar("Item")
Fields = list[tuple[float, str]]  # (weight, text) pairs an item is searched in


def terms(query: str) -> list[str]:
    """The query's distinct lowercase terms, in order."""
    return list(dict.fromkeys(query.lower().split()))


def rank_models(models: Iterable[ModelConfig], query: str) -> list[tuple[ModelConfig, float]]:
    return _rank(models, query, _model_fields, lambda m: m.name)


def rank_collections(collections: Iterable[CollectionConfig], query: str) -> list[tuple[CollectionConfig, float]]:
    return _rank(collections, query, _collection_fields, lambda c: c.slug)


def score(fields: Fields, wanted: list[str]) -> float:
    """The mean over `wanted` of the best weight among the fields each term occurs in (0 for none)."""
    if not wanted:
        return 0.0
    lowered = [(weight, text.lower()) for weight, text in fields]
    best = [max((weight for weight, text in lowered if term in text), default=0.0) for term in wanted]
    return sum(best) / len(wanted)


def _rank(
    items: Iterable[Item], query: str, fields: Callable[[Item], Fields], name: Callable[[Item], str]
) -> list[tuple[Item, float]]:
    wanted = terms(query)
    scored = [(item, score(fields(item), wanted)) for item in items]
    return sorted(((item, s) for item, s in scored if s > 0), key=lambda pair: (-pair[1], name(pair[0])))


def _model_fields(model: ModelConfig) -> Fields:
    tags = [(TAG_WEIGHT, tag) for tag in model.tags]
    return [(NAME_WEIGHT, model.name), *tags, (TEXT_WEIGHT, model.description or "")]


def _collection_fields(collection: CollectionConfig) -> Fields:
    return [(NAME_WEIGHT, collection.slug), (NAME_WEIGHT, collection.name), (TEXT_WEIGHT, collection.description)]
