"""The order a create tries a version's routes in: priority first (by default, the order listed), then a share
of equal-priority traffic by weight; routes without credentials left out."""

import random
from collections import Counter

from gateway.catalog import Route, TargetKind
from gateway.config import RouteConfig
from gateway.providers import Provider
from gateway.routing import Router


class _Provider(Provider):
    def __init__(self, usable: bool = True) -> None:
        self._usable = usable

    @property
    def usable(self) -> bool:
        return self._usable


def _routes(*configs: dict[str, object]) -> list[Route]:
    return [Route.from_config(RouteConfig.model_validate(c), position) for position, c in enumerate(configs)]


def test_routes_keep_the_listed_order_by_default() -> None:
    routes = _routes({"provider": "a"}, {"provider": "b"}, {"provider": "c"})
    router = Router({"a": _Provider(), "b": _Provider(), "c": _Provider()})
    assert [r.provider for r in router.candidates(routes)] == ["a", "b", "c"]
    assert routes[0].label == "a:server:" and routes[0].kind is TargetKind.SERVER


def test_a_lower_priority_number_goes_first_and_unusable_providers_are_left_out() -> None:
    routes = _routes({"provider": "a", "priority": 5}, {"provider": "b", "priority": 1}, {"provider": "c", "priority": 0})
    router = Router({"a": _Provider(), "b": _Provider(), "c": _Provider(usable=False)})
    assert [r.provider for r in router.candidates(routes)] == ["b", "a"]


def test_equal_priorities_share_first_place_by_weight_and_keep_the_others_as_fallbacks() -> None:
    routes = _routes(
        {"provider": "a", "priority": 1, "weight": 3},
        {"provider": "b", "priority": 1, "weight": 1},
        {"provider": "z", "priority": 2},
    )
    router = Router({"a": _Provider(), "b": _Provider(), "z": _Provider()}, random.Random(7))
    orders = [tuple(r.provider for r in router.candidates(routes)) for _ in range(4000)]
    assert set(orders) == {("a", "b", "z"), ("b", "a", "z")}
    first = Counter(order[0] for order in orders)
    assert 0.71 < first["a"] / len(orders) < 0.79  # 3 : 1
