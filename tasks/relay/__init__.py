"""The worker side: everything that runs a generation, and the only code that calls a provider.

The django-q2 cluster imports it (tasks/jobs.py); the web side (views, admin, selectors, services) never
does, so no request thread can open an upstream connection."""
