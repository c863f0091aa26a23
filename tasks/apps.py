from django.apps import AppConfig
from django.utils.module_loading import import_string


class TasksConfig(AppConfig):
    name = "tasks"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from foxgate.tracing import tracing_start
        from tasks.workerqueue import worker_queue_patch

        tracing_start()
        worker_queue_patch()
        post_spawn.connect(cluster_worker_started, dispatch_uid="relay_engine_start")


def cluster_worker_started(sender: object, proc_name: str, **kwargs: object) -> None:
    """As each cluster worker process starts, start its relay engine, so its loop renews leases and
    reclaims lapsed ones before any job arrives. Named by dotted path, like every job: this signal fires only
    in cluster workers, and web processes, which load this module too, never load the relay."""
    import_string("tasks.jobs.relay_engine_start")()
