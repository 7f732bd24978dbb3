"""Log what a job asks the model, only when the operator opts in with MES_LOG_PROMPTS."""

from __future__ import annotations

import logging
from typing import Any

from mes.jobs import Job

# A logger of its own, so an operator can route prompts to a separate, guarded sink.
prompt_log = logging.getLogger("mes.web.prompts")


def log_prompt(job: Job, body: dict[str, Any]) -> None:
    """Log one line with the job's ids and its prompt, system prompt and messages."""
    fields = {"job_id": job.id, "model": job.model, "queue": job.queue, "state": "queued",
              "prompt": body.get("prompt"), "system": body.get("system"),
              "messages": body.get("messages")}
    prompt_log.info("event=job_prompt job_id=%s model=%s", job.id, job.model,
                    extra={key: value for key, value in fields.items() if value is not None})
