"""Hold a job's lease and a model's slot while a worker runs the job, renewed in the background.

Renewal runs at a third of the TTL, so two missed beats still keep the lease.
A live lease means a live worker is running the job, so a redelivered message must not
start it again. A lease whose worker died (-9, OOM, lost host) expires within its TTL,
and the job can then run again. The same holds for a model's concurrency slot: queue
routing bounds a family's concurrency per worker, the slots bound a model's concurrency
across every worker and host.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from mes.store.leases import LeaseStore, release_commands
from mes.worker.renewer import Renewer

log = logging.getLogger(__name__)


def worker_token() -> str:
    """Return a token naming this process and one run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Holdings:
    """Keep one run's lease (and, once taken, its slot) renewed until released."""

    def __init__(self, leases: LeaseStore, renewer: Renewer, job_id: str, ttl_s: float):
        self._leases = leases
        self._renewer = renewer
        self.job_id = job_id
        self.ttl_s = ttl_s
        self.ttl_ms = int(ttl_s * 1000)
        self.lease_token = worker_token()
        self.slot_token = worker_token()
        self.slot_model: str | None = None
        self._handles: list[int] = []
        self.released = False
        self.tokens = None  # the run's TokenWriter, once it generates

    def lease_taken(self) -> None:
        """Start renewing the lease the claim script took."""
        self._handles.append(self._renewer.add(
            lambda: self._leases.renew_lease(self.job_id, self.lease_token, self.ttl_ms)))

    def slot_taken(self, model_id: str) -> None:
        """Start renewing the model slot the start script took."""
        self.slot_model = model_id
        self._handles.append(self._renewer.add(
            lambda: self._leases.renew_slot(model_id, self.slot_token, self.ttl_ms)))

    def release_commands(self) -> list[tuple]:
        """Return the commands that end the run, to ride along with its last save.

        The text not yet written goes first, then the slot and lease are released.
        """
        rest = self.tokens.rest_commands() if self.tokens is not None else []
        return rest + release_commands(self.job_id, self.lease_token, self.slot_model,
                                       self.slot_token if self.slot_model else None)

    def stop_renewing(self) -> None:
        """Stop renewing; the holdings are released (or expire) by themselves."""
        for handle in self._handles:
            self._renewer.remove(handle)
        self._handles.clear()

    def release(self) -> None:
        """Stop renewing and release what the last save did not."""
        self.stop_renewing()
        if self.released:
            return
        self.released = True
        try:
            if self.slot_model is not None:
                self._leases.release_slot(self.slot_model, self.slot_token)
            self._leases.release_lease(self.job_id, self.lease_token)
        except Exception as exc:  # noqa: BLE001 - both expire by themselves within their TTL
            log.warning("event=release_failed job_id=%s error=%s", self.job_id,
                        exc.__class__.__name__)
