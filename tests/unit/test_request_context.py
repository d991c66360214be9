import asyncio

from gateway import request_context


def test_outside_a_request_there_is_no_id_and_tags_are_dropped() -> None:
    request_context.tag(key_id="k1")
    assert request_context.request_id() is None and request_context.fields() == {}


def test_a_request_ends_with_its_block_and_hides_the_one_around_it() -> None:
    with request_context.serving("outer"):
        request_context.tag(tenant="t1")
        with request_context.serving("inner"):
            assert request_context.fields() == {"request_id": "inner"}
        with request_context.serving(None):
            assert request_context.request_id() is None
        assert request_context.fields() == {"request_id": "outer", "tenant": "t1"}
    assert request_context.fields() == {}


async def test_tasks_started_while_serving_share_the_requests_fields() -> None:
    async def refresh() -> None:
        request_context.tag(upstream_status=200)

    with request_context.serving("r-1"):
        await asyncio.create_task(refresh())
        assert request_context.fields() == {"request_id": "r-1", "upstream_status": 200}
