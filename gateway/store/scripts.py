"""Pipelines that carry Lua scripts, executed without asking the server about the scripts first.

redis-py's `Pipeline.execute` sends SCRIPT EXISTS for the scripts queued on it (`script(..., client=pipe)`)
before the pipeline itself: a round trip of its own on every create. Here the pipeline goes out at once with
each script as a bare EVALSHA. A server that has lost its scripts (restarted, flushed) answers NOSCRIPT for
one; such a script did not run, so it is run again on its own (redis-py's `Script` loads it then), after the
pipeline's other commands. Only scripts whose effect does not depend on their place in the pipeline may be
queued on pipelines run this way.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline
from redis.exceptions import NoScriptError


async def execute(pipe: Pipeline) -> list[Any]:
    """`pipe.execute()` in one round trip while the server holds the pipeline's scripts (else one more per
    script it lacks); raises the first error of any command, as `execute` does."""
    if isinstance(pipe, ClusterPipeline):  # its scripts go as EVAL with their bodies (store.redis): never NOSCRIPT
        return list(await pipe.execute())
    scripts = {str(script.sha): script for script in pipe.scripts}
    pipe.scripts.clear()  # nothing to ask the server before sending: a missing script is loaded below instead
    sent = [args for args, _ in pipe.command_stack]
    replies = list(await pipe.execute(raise_on_error=False))
    for position, reply in enumerate(replies):
        if isinstance(reply, NoScriptError) and str(sent[position][1]) in scripts:
            _, sha, count, *rest = sent[position]
            replies[position] = await scripts[str(sha)](keys=rest[: int(count)], args=rest[int(count) :])
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
