"""Compute engines: thin adapters that run SQL and return Arrow (DuckDB, Spark)."""
