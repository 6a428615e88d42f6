"""Spark as the compute engine: the same SQL (rendered by sqlglot) over the same Parquet.

One local SparkSession per process (``local[2]`` unless ``TIERWISE_SPARK_MASTER`` says
otherwise), with the session time zone set to UTC so that timestamps mean the same
instants as in DuckDB. Tables of the fact store become temporary views; results come back
as Arrow.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from pyspark.errors import (
    AnalysisException,
    ArithmeticException,
    DateTimeException,
    NumberFormatException,
    SparkRuntimeException,
)

from tierwise.engines.base import Engine, TableScan

_SESSION: Any = None


def spark_session() -> Any:
    """The process's SparkSession, created on first use."""
    global _SESSION
    if _SESSION is None:
        from pyspark.sql import SparkSession

        _SESSION = (
            SparkSession.builder.master(os.environ.get("TIERWISE_SPARK_MASTER", "local[2]"))
            .appName("tierwise")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.driver.memory", os.environ.get("TIERWISE_SPARK_MEMORY", "2g"))
            # splink's string-similarity functions (Jaro-Winkler …) for duplicate matching
            .config("spark.jars", _similarity_jar())
            .getOrCreate()
        )
        _SESSION.sparkContext.setLogLevel("ERROR")
    return _SESSION


def _similarity_jar() -> str:
    from splink.backends.spark import similarity_jar_location

    return str(similarity_jar_location())


class SparkEngine(Engine):
    name = "spark"
    in_process = False
    subqueries_in_columns = False
    query_errors: tuple[type[BaseException], ...] = (
        AnalysisException, ArithmeticException, DateTimeException, NumberFormatException,
        SparkRuntimeException)

    def for_background(self) -> SparkEngine:
        """The same engine: the cluster's executors do the work, not the calling thread."""
        return self

    def limit_threads(self, threads: int) -> None:
        """Nothing to limit here: the cluster's executors run the queries."""

    def for_staging(self) -> Engine:
        """A DuckDB engine in this process: an import's staged rows are local."""
        from tierwise.engines.duckdb import DuckDBEngine

        return DuckDBEngine()

    @contextmanager
    def session(self, scans: dict[str, TableScan] | None = None,
                arrow: dict[str, pa.Table] | None = None) -> Iterator[SparkSessionAdapter]:
        adapter = SparkSessionAdapter(spark_session())
        try:
            for name, scan in (scans or {}).items():
                adapter.register_scan(name, scan)
            for name, table in (arrow or {}).items():
                adapter.register_arrow(name, table)
            yield adapter
        finally:
            adapter.close()


class SparkSessionAdapter:
    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.views: list[str] = []

    def _view(self, name: str, frame: Any) -> None:
        frame.createOrReplaceTempView(name)
        self.views.append(name)

    def register_scan(self, name: str, scan: TableScan) -> None:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T
        from pyspark.sql.window import Window

        columns = [f.name for f in scan.schema]
        if not scan.files:
            schema = T.StructType([T.StructField(f.name, _spark_type(f.type))
                                   for f in scan.schema])
            self._view(name, self.spark.createDataFrame([], schema))
            return
        frame = self.spark.read.option("mergeSchema", "true").parquet(
            *[f.path for f in scan.files])
        for f in scan.schema:  # added to the schema after every file was written
            if f.name not in frame.columns:
                frame = frame.withColumn(f.name, F.lit(None).cast(_spark_type(f.type)))
        if scan.dedupe:
            seqs = self.spark.createDataFrame(
                [("file://" + f.path, f.seq) for f in scan.files] +
                [(f.path, f.seq) for f in scan.files], ["_file", "_seq"])
            frame = frame.withColumn("_file", F.input_file_name()).join(seqs, "_file")
            rank = Window.partitionBy(*scan.key).orderBy(F.col("_seq").desc(),
                                                         F.col("_row").desc())
            frame = frame.withColumn("_rank", F.row_number().over(rank)).where("_rank = 1")
        frame = frame.select(*columns)
        if scan.redirects and scan.refs:
            redirects = self.spark.createDataFrame(list(scan.redirects),
                                                   ["_merged_id", "_survivor_id"])
            for ref in scan.refs:
                frame = (frame.join(F.broadcast(redirects), frame[ref] == redirects._merged_id,
                                    "left")
                         .withColumn(ref, F.coalesce("_survivor_id", ref))
                         .drop("_merged_id", "_survivor_id"))
            frame = frame.select(*columns)
        self._view(name, frame)

    def register_arrow(self, name: str, table: pa.Table) -> None:
        self._view(name, self.spark.createDataFrame(table))

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pa.Table:
        frame = self.spark.sql(sql, args=params or None)
        return frame.toArrow()

    def scalar(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> Any:
        rows = self.spark.sql(sql, args=params or None).collect()
        return rows[0][0] if rows else None

    def execute(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> None:
        self.spark.sql(sql, args=params or None).collect()

    def materialize(self, name: str, sql: str, params: dict[str, Any] | None = None) -> None:
        frame = self.spark.sql(sql, args=params or None).cache()
        frame.count()  # compute it now, once
        self._view(name, frame)

    def copy_to_parquet(self, sql: str, path: str) -> None:
        raise NotImplementedError("the Spark engine reads the fact store; imports use DuckDB")

    def close(self) -> None:
        for view in self.views:
            self.spark.catalog.dropTempView(view)
        self.views.clear()


def _spark_type(dtype: pa.DataType) -> Any:
    from pyspark.sql import types as T

    if pa.types.is_string(dtype):
        return T.StringType()
    if pa.types.is_float64(dtype):
        return T.DoubleType()
    if pa.types.is_int64(dtype):
        return T.LongType()
    if pa.types.is_date32(dtype):
        return T.DateType()
    if pa.types.is_timestamp(dtype):
        return T.TimestampType()
    raise TypeError(f"no Spark type for {dtype}")


__all__ = ["SparkEngine", "spark_session"]
