"""Background work that drives every prediction to its end with nobody watching: follow-ups (polling the
upstream, settling finished predictions) and `Cancel-After` deadlines, shared by all gateway processes through
Redis schedules."""

from gateway.lifecycle.deadlines import Deadlines
from gateway.lifecycle.follow_ups import FollowUpPolicy, FollowUps, Settle

__all__ = ["Deadlines", "FollowUpPolicy", "FollowUps", "Settle"]
