"""A Replicate-compatible aggregation gateway."""

__version__ = "0.1.0"
