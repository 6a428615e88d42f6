"""Checks over a whole staged import, run on the compute engine.

Each takes the engine session in which the staging file is registered as ``staged``:
repeated keys inside the file, references to unknown customers, and the comparison with
the rows already stored (new / changed / unchanged).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from tierwise.definitions.schemas import TableSchema
from tierwise.engines.base import TableScan
from tierwise.engines.duckdb import ident
from tierwise.errors import Said
from tierwise.ingest.convert import Reject
from tierwise.ingest.mapping import Resolved
from tierwise.store import customer_mirror
from tierwise.store import customers as customer_store
from tierwise.store.facts import FactStore, StagedFile, file_schema, key_columns
from tierwise.store.key_index import KeyIndex, key_hashes

if TYPE_CHECKING:
    from tierwise.ingest.results import ImportResult
    from tierwise.workspace import Workspace

#: At most this many rows of each kind of problem are listed in a report.
LISTED = 10_000
UNKNOWN_CUSTOMER = Said("unknown customer: import customers first, or use --unknown-customers "
                        "create", "未知客户：请先导入客户，或使用 --unknown-customers create")


def duplicate_keys(session: Any, schema: TableSchema, staged: StagedFile,
                   result: ImportResult, facts: FactStore) -> list[Reject]:
    """Keys repeated inside one file: rejected for keyed tables, collapsed for the others."""
    if staged.keys_ascending:
        return []
    key = ", ".join(ident(k) for k in key_columns(schema))
    present = " AND ".join(f"{ident(k)} IS NOT NULL" for k in key_columns(schema))
    counts = session.query(f"SELECT count(*) AS n, count(DISTINCT ({key})) AS d FROM staged "
                           f"WHERE {present}").to_pylist()[0]
    extra = counts["n"] - counts["d"]
    if extra == 0:
        return []
    if not schema.key:
        # Identical rows (or repeated event ids) in one file: keep the last occurrence.
        tmp = facts.staging_path()
        session.copy_to_parquet(
            f"SELECT * FROM staged QUALIFY row_number() OVER (PARTITION BY {key} "
            "ORDER BY _row DESC) = 1 ORDER BY _row", str(tmp))
        tmp.replace(staged.path)
        result.duplicates_collapsed = extra
        staged.rows -= extra
        result.rows_read = staged.rows
        return []
    dupes = session.query(
        f"SELECT {key}, list(_row ORDER BY _row) AS rows FROM staged WHERE {present} "
        f"GROUP BY {key} HAVING count(*) > 1 ORDER BY min(_row) LIMIT {LISTED}"
    ).to_pylist()
    column = schema.key[0]
    found = [Reject(r, column, str(d[column]),
                    Said(f"duplicate key: row {d['rows'][0]} has the same {column}",
                         f"重复的键：第 {d['rows'][0]} 行的 {column} 与此相同"))
             for d in dupes for r in d["rows"][1:]]
    return sorted(found, key=lambda r: r.row)


#: Up to this many distinct customer ids, an import looks up just those ids.
SMALL_LOOKUP = 20_000


class KnownAhead:
    """Every known customer id, read on a thread while a large file is staged.

    Reading a million ids takes ~0.3 s, which the staging's spare CPU absorbs instead of
    the import's wall time. Started when the file's first batch names more customers than
    ``SMALL_LOOKUP`` (so the ids will be read anyway); taken only if the customers are as
    they were when read (``known_state``), else read again. The thread ends with its read
    (a daemon: an import that fails before taking the ids leaves nothing to close).
    """

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._read: Future[tuple[tuple[object, ...], pa.Array]] | None = None

    @property
    def started(self) -> bool:
        return self._read is not None

    def start(self) -> None:
        if self._read is None:
            read = self._read = Future()
            threading.Thread(target=self._fill, args=(read,), name="tierwise-known-ids",
                             daemon=True).start()

    def _fill(self, read: Future[tuple[tuple[object, ...], pa.Array]]) -> None:
        try:
            read.set_result(self._known())
        except BaseException as exc:  # noqa: BLE001 - raised where the ids are taken
            read.set_exception(exc)

    def _known(self) -> tuple[tuple[object, ...], pa.Array]:
        with self._ws.control.read() as conn:
            return customer_store.known_state(conn), customer_store.known_ids(conn)

    def take(self, conn: Any) -> pa.Array:
        """The known ids as ``conn`` sees them."""
        if self._read is not None:
            state, known = self._read.result()
            if state == customer_store.known_state(conn):
                return known
        return customer_store.known_ids(conn)


def unknown_customers(ws: Workspace, session: Any, schema: TableSchema, resolved: Resolved,
                      policy: str, ahead: KnownAhead | None = None
                      ) -> tuple[list[str], list[Reject]]:
    """Customer ids the facts name but the control store lacks (the known ids from
    ``ahead`` where it read them).

    Returns (ids to create as stubs, rejects): one of the two is empty, by ``policy``.
    """
    if not schema.customer_refs:
        return [], []
    refs = " UNION ALL ".join(f"SELECT {ident(r)} AS id FROM staged WHERE {ident(r)} IS NOT NULL"
                              for r in schema.customer_refs)
    # When the file's first batch already named more customers than a lookup serves, every
    # known id is read and every row probed against them, the (usually no) absent ones
    # made distinct after: cheaper than making ten million ids distinct first (0.47 s
    # against 0.57 s). Otherwise the distinct ids tell whether a lookup of just those does.
    named = None if ahead is not None and ahead.started else session.query(
        f"SELECT DISTINCT id FROM ({refs}) AS t").column(0)
    with ws.control.read() as conn:
        if named is None or len(named) > SMALL_LOOKUP:
            known = ahead.take(conn) if ahead is not None else customer_store.known_ids(conn)
        else:  # a few thousand ids (real-time micro-batches): ask about those
            found = _known_among(ws, conn, named.to_pylist())
            if len(set(found)) == len(named):  # all of them (most micro-batches)
                return [], []
            known = pa.array(found, pa.string())
    session.register_arrow("known", _as_table(known))
    if named is None:
        absent = session.query(f"SELECT DISTINCT t.id FROM ({refs}) AS t ANTI JOIN known k "
                               "ON t.id = k.customer_id").column(0)
    else:  # the rows are read again only for the ids that are missing
        session.register_arrow("named", pa.table({"id": named}))
        absent = session.query("SELECT n.id FROM named n ANTI JOIN known k "
                               "ON n.id = k.customer_id").column(0)
    if len(absent) == 0:
        return [], []
    session.register_arrow("absent", pa.table({"id": absent}))
    ids: set[str] = set()
    rejects: list[Reject] = []
    for ref in schema.customer_refs:
        missing = session.query(
            f"SELECT s._row AS row, s.{ident(ref)} AS id FROM staged s SEMI JOIN absent a "
            f"ON s.{ident(ref)} = a.id ORDER BY s._row").to_pylist()
        if policy == "create":
            ids.update(m["id"] for m in missing)
        else:
            source = resolved.sources.get(ref, ref)
            rejects += [Reject(m["row"], source, m["id"], UNKNOWN_CUSTOMER)
                        for m in missing[:LISTED]]
    return sorted(ids), rejects


def _known_among(ws: Workspace, conn: Any, named: list[str]) -> list[str]:
    """Which of ``named`` are known: where the customers are kept in memory (the real-time
    worker), the ids found there plus what the control store says about the others
    (merged ids, customers created since the copy was made)."""
    kept = customer_mirror.read_if_kept(ws.root, ws.control)
    if kept is None:
        return customer_store.known_among(conn, named)
    ids = kept["customer_id"]
    found = ids.filter(pc.is_in(ids, value_set=pa.array(named, pa.string()))).to_pylist()
    seen = set(found)
    rest = [n for n in named if n not in seen]
    return found + (customer_store.known_among(conn, rest) if rest else [])


def _as_table(ids: Any) -> Any:
    import pyarrow as pa

    return pa.table({"customer_id": ids})


def _changed(columns: list[str]) -> str:
    if not columns:
        return "false"
    return " OR ".join(f"s.{ident(c)} IS DISTINCT FROM l.{ident(c)}" for c in columns)


def _classify(session: Any, result: ImportResult, staged: StagedFile, join: str,
              first_key: str, compare: list[str], facts: FactStore) -> None:
    """Count new / changed / unchanged rows against ``live``; keep only new and changed."""
    counts = session.query(
        f"SELECT count(*) FILTER (WHERE l.{first_key} IS NULL) AS inserted, "
        f"count(*) FILTER (WHERE l.{first_key} IS NOT NULL AND ({_changed(compare)})) "
        f"AS updated, count(*) AS total FROM staged s LEFT JOIN live l ON {join}"
    ).to_pylist()[0]
    result.inserted = int(counts["inserted"])
    result.updated = int(counts["updated"])
    result.unchanged = int(counts["total"]) - result.inserted - result.updated
    if result.unchanged:
        tmp = facts.staging_path()
        session.copy_to_parquet(
            f"SELECT s.* FROM staged s LEFT JOIN live l ON {join} WHERE l.{first_key} IS NULL "
            f"OR ({_changed(compare)}) ORDER BY s._row", str(tmp))
        tmp.replace(staged.path)
        staged.rows = result.inserted + result.updated


def classify_facts(ws: Workspace, session: Any, schema: TableSchema, staged: StagedFile,
                   result: ImportResult, key_index: KeyIndex | None = None) -> int:
    """Compare with the stored rows; returns the manifest position the comparison saw.

    With a ``key_index`` of the table, an import none of whose keys may be stored skips
    reading the stored rows: every row is new.
    """
    with ws.control.read() as conn:
        # the position first: on PostgreSQL each statement sees what was committed before
        # it, so a file published between the two reads would otherwise be neither compared
        # (not in the scan) nor a race (not after the position) — its keys read twice
        snapshot = ws.facts.max_file_id(conn, schema.name)
        live = ws.facts.scan(schema.name, conn)
    if not live.files:
        result.inserted = staged.rows
        return snapshot
    if key_index is not None:
        key_index.refresh(session, live)
        hashes = key_hashes(session, "staged", key_columns(schema))
        # the file this import publishes holds these keys or fewer: the index need not
        # read it (nor wait for it to be read before a merge of it counts as known)
        key_index.expect(ws.facts.published_path(staged), hashes)
        if not key_index.any_of(hashes):
            result.inserted = staged.rows
            return snapshot
    session.register_scan("live", TableScan(live.table, live.files, live.key, live.dedupe,
                                            file_schema(schema)))
    keys = key_columns(schema)
    join = " AND ".join(f"s.{ident(k)} = l.{ident(k)}" for k in keys)
    _classify(session, result, staged, join, ident(keys[0]),
              [c.name for c in schema.columns], ws.facts)
    return snapshot


def classify_customers(ws: Workspace, session: Any, staged: StagedFile, result: ImportResult,
                       columns: list[str], facts: FactStore) -> None:
    """Compare the columns this import writes with the stored customers."""
    names = sorted(set(columns) | {"customer_id"})
    with ws.control.read() as conn:
        # a few thousand customers (the API, real-time sign-ups): read those, not every
        # stored customer with its personal data decrypted
        ids = None if staged.rows > SMALL_LOOKUP else session.query(
            "SELECT DISTINCT customer_id FROM staged WHERE customer_id IS NOT NULL"
        ).column(0).to_pylist()
        live = customer_store.as_arrow(conn, columns=names, ids=ids)
        session.register_arrow("live", live)
    _classify(session, result, staged, "s.customer_id = l.customer_id", "customer_id",
              [c for c in names if c != "customer_id"], facts)


def _said_link(problem: str, *values: object) -> Said:
    texts = {
        "self": ("a contact cannot be its own account",
                 "联系人不能把自己作为所属客户"),
        "unknown": ("names no customer: import the account (a customer row with this id) "
                    "first or in the same file",
                    "没有这个客户：请先导入该客户（公司），或在同一文件中导入"),
        "merged": ("was merged into {0}: name {0}", "已合并到 {0}：请写 {0}"),
        "contact": ("is itself a contact of {0}: an account cannot be a contact",
                    "本身是 {0} 的联系人：联系人不能再作为所属客户"),
        "has_contacts": ("this customer is the account of {0} contact(s) (e.g. {1}): an "
                         "account cannot become a contact",
                         "该客户是 {0} 个联系人的所属客户（如 {1}）：不能再成为联系人"),
        "role": ("a role is for contacts: this customer names no account (account_id)",
                 "角色只用于联系人：该客户没有所属客户（account_id）"),
    }
    en, zh = texts[problem]
    return Said(en.format(*values), zh.format(*values))


def account_links(ws: Workspace, session: Any, staged: StagedFile, resolved: Resolved,
                  written: list[str]) -> list[Reject]:
    """Contacts and their accounts, as they will be once a customers import is applied: a
    contact's ``account_id`` names a stored customer or one in the file (its survivor when
    merged: the import names the survivor), not itself and not another contact; a customer
    that is an account of contacts does not become a contact; a ``role`` belongs to a
    contact. One level only: accounts and their people, not a tree of companies."""
    if "account_id" not in written and "role" not in written:
        return []
    linking = "account_id" if "account_id" in written else "CAST(NULL AS VARCHAR)"
    role = "role" if "role" in written else "CAST(NULL AS VARCHAR)"
    # the rows that link (a file of a million private customers reads none of them)
    rows = session.query(
        f"SELECT _row, customer_id, {linking} AS account_id, {role} AS role FROM staged "
        f"WHERE customer_id IS NOT NULL AND ({linking} IS NOT NULL OR {role} IS NOT NULL) "
        "ORDER BY _row").to_pylist()
    if not rows:
        return []
    named = sorted({r["account_id"] for r in rows if r["account_id"]})
    with ws.control.read() as conn:
        stored = customer_store.accounts_of(
            conn, sorted({r["customer_id"] for r in rows} | set(named)))
        merged = customer_store.survivors_of(conn, named)
        # the stored contacts of the customers this file makes contacts
        theirs = customer_store.contacts_of(
            conn, [r["customer_id"] for r in rows if r["account_id"]])
    for owner, contacts in theirs.items():
        for contact in contacts:
            stored.setdefault(contact, owner)
    # what the file says of the other customers the checks ask about: the accounts it
    # names and the stored contacts of those it makes contacts
    asked = set(named) | {c for contacts in theirs.values() for c in contacts}
    session.register_arrow("_asked", pa.table({"customer_id": pa.array(sorted(asked),
                                                                        pa.string())}))
    in_file = {r["customer_id"]: r for r in session.query(
        f"SELECT customer_id, {linking} AS account_id FROM staged "
        "WHERE customer_id IN (SELECT customer_id FROM _asked)").to_pylist()}
    in_file.update({r["customer_id"]: r for r in rows})

    def account_of(customer: str) -> str | None:
        """The account a customer names once the import is applied."""
        if customer in in_file and "account_id" in written:
            return in_file[customer]["account_id"]
        return stored.get(customer)

    # contacts in the file of each customer in the file
    for r in rows:
        if r["account_id"]:
            theirs.setdefault(r["account_id"], []).append(r["customer_id"])
    column = resolved.sources.get("account_id", "account_id")
    found: list[Reject] = []
    for r in rows:
        me: str = r["customer_id"]
        account = account_of(me)
        if account is not None and "account_id" in written and r["account_id"]:
            problem: Said | None = None
            if account == me:
                problem = _said_link("self")
            elif account in merged:
                problem = _said_link("merged", merged[account])
            elif account not in in_file and account not in stored:
                problem = _said_link("unknown")
            elif (above := account_of(account)) is not None:
                problem = _said_link("contact", above)
            else:
                others = [c for c in theirs.get(me, []) if account_of(c) == me and c != me]
                if others:
                    problem = _said_link("has_contacts", len(set(others)),
                                         sorted(set(others))[0])
            if problem is not None:
                found.append(Reject(r["_row"], column, account, problem))
                continue
        if r["role"] is not None and account is None:
            found.append(Reject(r["_row"], resolved.sources.get("role", "role"), r["role"],
                                _said_link("role")))
        if len(found) >= LISTED:
            break
    return found

