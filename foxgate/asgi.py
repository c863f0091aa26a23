import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "foxgate.settings")
# A web server handles many requests at once, each in its own thread: give it a connection pool.
os.environ.setdefault("FOXGATE_DB_POOL", "1")
# Name its database connections, so pg_stat_activity tells web connections from the cluster's.
os.environ.setdefault("PGAPPNAME", "foxgate-web")

django_application = get_asgi_application()

from foxgate.parsers import BodyLimit  # noqa: E402 - needs the settings configured above

application = BodyLimit(django_application)
