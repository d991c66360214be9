"""The order a create tries a version's routes in."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from gateway.catalog import Route
from gateway.providers import Provider


class Router:
    """Orders routes by priority, lowest first; routes of one priority in a random order weighted by `weight`
    (each next pick in proportion to the weights left), as DNS SRV records share load. Routes whose provider
    cannot take predictions (no credentials) are left out."""

    def __init__(self, providers: Mapping[str, Provider], rng: random.Random | None = None) -> None:
        self._providers = providers
        self._rng = rng or random.Random()

    def candidates(self, routes: Sequence[Route]) -> list[Route]:
        usable = [r for r in routes if (p := self._providers.get(r.provider)) is not None and p.usable]
        ordered: list[Route] = []
        for priority in sorted({r.priority for r in usable}):
            ordered.extend(self._shuffled([r for r in usable if r.priority == priority]))
        return ordered

    def _shuffled(self, group: list[Route]) -> list[Route]:
        if len(group) == 1:
            return group
        left, picked = list(group), []
        while left:
            chosen = self._rng.choices(left, weights=[r.weight for r in left])[0]
            left.remove(chosen)
            picked.append(chosen)
        return picked
