"""Compute engines: thin adapters that run SQL and return Arrow (DuckDB, Spark); what each
can do is data on the engine object, and the workspace's ``engine`` setting picks one."""

from __future__ import annotations

from tierwise.engines.base import Engine


def make_engine(name: str) -> Engine:
    """The engine named in the workspace config."""
    if name == "duckdb":
        from tierwise.engines.duckdb import DuckDBEngine

        return DuckDBEngine()
    if name == "spark":
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise ValueError("the Spark engine needs pyspark: pip install 'tierwise[spark]' "
                             "(and Java 17 or newer)") from None
        from tierwise.engines.spark import SparkEngine

        return SparkEngine()
    raise ValueError(f"unknown engine {name!r}; expected 'duckdb' or 'spark'")
