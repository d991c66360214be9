"""An emulator of Replicate's HTTP API with fault injection, used as the upstream in tests."""

from __future__ import annotations

from tests.emulator.controls import (
    EmulatedModel,
    EmulatorConfig,
    EmulatorControls,
    Fault,
    RecordedRequest,
)
from tests.emulator.predictions import WEBHOOK_SECRET
from tests.emulator.replicate import ReplicateEmulatorApp, create_replicate_emulator

__all__ = [
    "WEBHOOK_SECRET",
    "EmulatedModel",
    "EmulatorConfig",
    "EmulatorControls",
    "Fault",
    "RecordedRequest",
    "ReplicateEmulatorApp",
    "create_replicate_emulator",
]
