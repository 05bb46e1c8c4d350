"""The Celery application that carries trial tasks.

Reliability settings (each has a cost, stated here):

* JSON only, never pickle: a broker message can never run code on a worker.
* ``acks_late`` with ``reject_on_worker_lost``: a message is acknowledged after the trial ends, so a worker that
  dies gives its message back. Redelivery may run a task twice; the trial task is idempotent on
  (task, trial, attempt), so the second run does nothing.
* Prefetch multiplier 1: a busy worker does not hoard queued trials that an idle one could run.
* The broker's visibility timeout is only a fallback for lost messages; a lease with a heartbeat in Redis is what
  declares a trial's worker lost, within seconds.
"""

from __future__ import annotations

from celery import Celery

from broker.settings import Settings, get_settings

#: Name of the Celery task that runs one trial attempt.
RUN_TRIAL = "openhpo.run_trial"
#: Name of the Celery task that runs one member of an elastic (multi-worker) trial.
RUN_MEMBER = "openhpo.run_member"


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("openhpo", broker=settings.celery_broker_url, include=["workers.tasks", "workers.members"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.queue,
        task_routes={RUN_TRIAL: {"queue": settings.queue}, RUN_MEMBER: {"queue": settings.queue}},
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        # Workers sit on a GPU each and trials may run for hours: no time limit from Celery itself.
        task_time_limit=None,
    )
    return app


app = create_app()
