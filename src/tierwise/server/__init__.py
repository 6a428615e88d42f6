"""The ASGI application: the REST API and the dashboard behind one set of middleware."""
