"""A real OpenID Connect provider for the single sign-on tests: django-oauth-toolkit with OIDC on, run as
its own process (`python -m tests.oidc_provider.serve`) with its own SQLite database, users and groups.
Nothing here is FoxGate's: it stands for the company's identity provider."""
