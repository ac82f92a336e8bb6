"""The studio app."""

from django.apps import AppConfig


class StudioConfig(AppConfig):
    name = "studio"
    verbose_name = "Studio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from studio import checks  # noqa: F401  (registers the system checks)
        from studio.tasks import on_worker_spawn

        post_spawn.connect(on_worker_spawn, dispatch_uid="studio-revive-on-spawn")
