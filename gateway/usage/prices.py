"""What a prediction costs: the catalog's price applied to what it used, and the estimate a create pre-charges."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.config import PriceConfig
from gateway.status import Status
from gateway.usage.money import to_nanos

_MICROS = Decimal(10**6)
_MAX_ESTIMATED_OUTPUTS = 100


@dataclass(frozen=True)
class Price:
    per_prediction: Decimal = Decimal(0)
    per_second: Decimal = Decimal(0)
    per_output: Decimal = Decimal(0)
    estimate_seconds: Decimal = Decimal(0)

    @classmethod
    def from_config(cls, config: PriceConfig) -> Price:
        return cls(config.per_prediction, config.per_second, config.per_output, config.estimate_seconds)

    @property
    def free(self) -> bool:
        return not (self.per_prediction or self.per_second or self.per_output)

    def cost(self, status: Status, predict_us: int, outputs: int) -> int:
        """Nano-units for a finished prediction: run time whatever the outcome; the rest only when it succeeded."""
        amount = self.per_second * Decimal(predict_us) / _MICROS
        if status is Status.SUCCEEDED:
            amount += self.per_prediction + self.per_output * outputs
        return to_nanos(amount)

    def estimate(self, prediction_input: dict[str, Any]) -> int:
        """Nano-units to pre-charge for a create: as if it succeeds with the outputs it asks for."""
        amount = self.per_prediction + self.per_output * expected_outputs(prediction_input)
        return to_nanos(amount + self.per_second * self.estimate_seconds)


def expected_outputs(prediction_input: dict[str, Any]) -> int:
    """How many outputs a create asks for (`num_outputs`, the convention of image models), else one."""
    asked = prediction_input.get("num_outputs")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked >= 1:
        return min(asked, _MAX_ESTIMATED_OUTPUTS)
    return 1


def outputs_of(output: Any) -> int:
    """How many outputs a finished prediction has: the items of a list, else one unless there is none."""
    if output is None:
        return 0
    if isinstance(output, list):
        return sum(1 for item in output if item is not None)
    return 1
