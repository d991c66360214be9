import itertools

import pytest

from gateway.status import TERMINAL, Status, allowed_sources, can_transition, parse_status

ORDER = [Status.STARTING, Status.PROCESSING]


@pytest.mark.parametrize("current,new", list(itertools.product(Status, Status)))
def test_every_pair_follows_the_monotonic_rule(current: Status, new: Status) -> None:
    if current in TERMINAL:
        expected = False
    elif new in TERMINAL:
        expected = True
    else:
        expected = ORDER.index(new) >= ORDER.index(current)
    assert can_transition(current, new) is expected


def test_allowed_sources_of_a_terminal_status_are_the_unfinished_ones() -> None:
    assert allowed_sources(Status.SUCCEEDED) == [Status.STARTING, Status.PROCESSING]
    assert allowed_sources(Status.STARTING) == [Status.STARTING]


def test_aborted_is_reported_as_canceled_and_unknown_statuses_are_refused() -> None:
    assert parse_status("aborted") is Status.CANCELED
    assert parse_status("processing") is Status.PROCESSING
    with pytest.raises(ValueError, match="unknown prediction status 'queued'"):
        parse_status("queued")
