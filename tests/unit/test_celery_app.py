"""The Celery app's reliability and security settings."""

from broker.app import RUN_TRIAL, create_app
from broker.settings import Settings


def test_app_accepts_json_only():
    app = create_app(Settings(redis_url="redis://127.0.0.1:6379/11"))

    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"


def test_app_redelivers_lost_work():
    app = create_app(Settings(redis_url="redis://127.0.0.1:6379/11", visibility_timeout=120, queue="q1"))

    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] == 120
    assert app.conf.task_routes[RUN_TRIAL] == {"queue": "q1"}
