from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "tasks"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from tasks.workerqueue import worker_queue_patch

        worker_queue_patch()
        post_spawn.connect(relay_engine_start, dispatch_uid="relay_engine_start")


def relay_engine_start(sender: object, proc_name: str, **kwargs: object) -> None:
    """Start the relay engine as each cluster worker process starts, so its loop renews leases and
    reclaims lapsed ones before any job arrives. Imported here, lazily: web processes never load the relay."""
    from tasks.relay.engine import engine_start

    engine_start()
