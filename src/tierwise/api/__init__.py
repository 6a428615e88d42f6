"""The REST API (FastAPI): authentication, problems, one routes module per area."""
