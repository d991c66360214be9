"""Client webhooks: events from prediction changes into a durable stream (`outbox`), signed sending with
retries (`worker`, `signing`), and the create-time address check (`targets`)."""

from dataclasses import dataclass

from gateway.deliveries.outbox import Outbox
from gateway.deliveries.signing import TenantSecrets
from gateway.deliveries.targets import WebhookTargets
from gateway.deliveries.worker import DeliveryWorker, RetryPolicy, WorkerLimits


@dataclass(frozen=True)
class Webhooks:
    """What the rest of the gateway uses: `outbox.observe` on every change and `outbox.settle` on finished
    predictions, `targets.check` on create, `secrets` for the secret endpoint, `worker.run` in the background."""

    outbox: Outbox
    secrets: TenantSecrets
    targets: WebhookTargets
    worker: DeliveryWorker


__all__ = ["DeliveryWorker", "Outbox", "RetryPolicy", "TenantSecrets", "WebhookTargets", "Webhooks", "WorkerLimits"]
