"""Services: one function per user-visible operation, shared by the CLI, the REST API,
the dashboard and the Python API."""
