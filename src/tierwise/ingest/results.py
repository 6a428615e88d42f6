"""What an import did (or, with ``dry_run``, would do)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class ImportResult:
    """What an import did (or, with ``dry_run``, would do)."""

    table: str
    source: str
    format: str
    encoding: str | None
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    stubs_created: int = 0
    duplicates_collapsed: int = 0
    dry_run: bool = False
    import_id: int | None = None
    columns: dict[str, str] = field(default_factory=dict)
    #: Cleaning rule → how many values it changed or flagged (customers only).
    cleaned: dict[str, int] = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)
    #: Extra columns that hold personal data (``sensitive_attributes`` and the common
    #: names): encrypted at rest in customers' attributes, masked for roles without PII
    #: rights wherever they are shown.
    sensitive: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{self.inserted:,} new", f"{self.updated:,} updated",
                 f"{self.unchanged:,} unchanged"]
        if self.stubs_created:
            parts.append(f"{self.stubs_created:,} stub customers "
                         f"{'to create' if self.dry_run else 'created'}")
        if self.duplicates_collapsed:
            parts.append(f"{self.duplicates_collapsed:,} identical rows collapsed")
        if self.cleaned:
            parts.append("cleaned: " + ", ".join(f"{n:,} {rule}" for rule, n in
                                                  sorted(self.cleaned.items())))
        if self.sensitive:
            parts.append("sensitive (masked" + (", encrypted" if self.table == "customers"
                                                else "") + "): " + ", ".join(self.sensitive))
        return (f"{self.table}: {verb} {self.rows_read:,} rows from {self.source} "
                f"({', '.join(parts)}) in {self.seconds:.1f}s")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)
