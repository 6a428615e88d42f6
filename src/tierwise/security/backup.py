"""Backups of a workspace, their verification, and restores (``tierwise backup``/``restore``).

A backup is a folder::

    manifest.json      what is in it: every file with its size and SHA-256, the key ids a
                       restore needs, and the figures a restore must answer the same
    control.sqlite     the control store at the backup instant (or control.pgdump)
    files/...          fact files live at that instant, snapshot files, tierwise.toml,
                       segment files, reports, the identity model
    keys.sealed        only with --include-keys: the keys, encrypted with a passphrase

The instant is the control store's: its copy names the fact and snapshot files, and those
files never change once written (new data goes to new files), so copying them afterwards
copies that instant; the backup holds a lease meanwhile so that no retired file is deleted
under it. An erasure running at the same time deletes files at once; the backup then starts
again (three tries). Files outside the control store (segment YAML, reports) are copied
as they are when the copy reaches them.

An incremental backup (``base``) hard-links the fact and snapshot files the base backup
already holds (same path and size: they are immutable) instead of copying them, so each
backup is complete on its own and deleting an older one loses nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
import uuid
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from tierwise.config import CONFIG_FILE, read_config, write_config
from tierwise.definitions.schemas import TABLES
from tierwise.errors import WorkspaceError
from tierwise.store import audit, leases
from tierwise.store import backup as frozen_store
from tierwise.store.audit_key import ENV_KEY as ENV_AUDIT_KEY
from tierwise.store.audit_key import AuditKey
from tierwise.store.audit_key import from_environment as audit_key_from_environment
from tierwise.store.audit_key import load as load_audit_key
from tierwise.store.control import utcnow
from tierwise.store.sealing import (
    ENV_KEY,
    KeyRing,
    key_id_of_key,
    write_key_file,
    write_private,
)
from tierwise.workspace import Workspace

log = logging.getLogger("tierwise.backup")

FORMAT = "tierwise-backup/1"
MANIFEST = "manifest.json"
KEYS_FILE = "keys.sealed"
ENV_PASSPHRASE = "TIERWISE_BACKUP_PASSPHRASE"
MIN_PASSPHRASE = 12
#: Workspace folders copied as they are.
PLAIN_FOLDERS = ("segments", "reports", "identity")
ATTEMPTS = 3
CHUNK = 1 << 20
#: The backup's lease; renewed every fifth of it while the backup runs.
LEASE_SECONDS = 600


class _Vanished(Exception):
    """A file live at the instant was deleted before it was copied (an erasure)."""


# -- backup ------------------------------------------------------------------------------
def backup(ws: Workspace, dest: str | os.PathLike[str], *, base: str | None = None,
           include_keys: bool = False, passphrase: str | None = None) -> dict[str, Any]:
    """Write a backup of ``ws`` to the new folder ``dest``; returns its manifest."""
    target = Path(dest).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkspaceError(f"{target} exists and is not empty; back up into a new folder",
                             zh=f"{target} 已存在且不是空的；请备份到一个新文件夹")
    if include_keys:
        check_passphrase(passphrase)
    base_files = _base_files(Path(base).expanduser().resolve()) if base else {}
    holder = uuid.uuid4().hex
    with ws.control.write() as conn:
        if not leases.take(conn, frozen_store.LEASE, holder, utcnow(), LEASE_SECONDS):
            raise WorkspaceError("another backup of this workspace is running; wait for it "
                                 f"(a backup that was killed frees it within "
                                 f"{LEASE_SECONDS // 60} minutes)",
                                 zh="这个工作区的另一个备份正在进行；请等它结束（被终止的备份会在 "
                                 f"{LEASE_SECONDS // 60} 分钟内释放）")
    done = threading.Event()

    def renew() -> None:  # a killed backup's lease runs out soon; a long one keeps it
        while not done.wait(LEASE_SECONDS / 5):
            try:
                with ws.control.write() as conn:
                    leases.take(conn, frozen_store.LEASE, holder, utcnow(), LEASE_SECONDS)
            except Exception:  # noqa: BLE001 - the next try may work; the lease is long
                log.warning("could not renew the backup lease", exc_info=True)

    threading.Thread(target=renew, name="tierwise-backup-lease", daemon=True).start()
    try:
        target.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                manifest = _backup_once(ws, target, base, base_files)
                break
            except _Vanished as gone:
                _empty(target)
                if attempt == ATTEMPTS:
                    raise WorkspaceError(f"{gone} was deleted while it was being backed up "
                                         f"({ATTEMPTS} tries; an erasure or retention run "
                                         "was rewriting files): run the backup again",
                                         zh=f"{gone} 在备份过程中被删除了（已尝试 {ATTEMPTS} 次；有"
                                         "擦除或保留期任务在重写文件）：请重新运行备份") from None
        if include_keys:
            assert passphrase is not None
            (target / KEYS_FILE).write_bytes(seal_keys(ws, passphrase))
            manifest["keys"]["included"] = True
            manifest["files"].append(_entry(target, KEYS_FILE))
        _write_json(target / MANIFEST, manifest)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        done.set()
        with ws.control.write() as conn:
            leases.release(conn, frozen_store.LEASE, holder)
    return manifest


def _backup_once(ws: Workspace, target: Path, base: str | None,
                 base_files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    with frozen_store.frozen_copy(ws.control, target) as frozen:
        conn = frozen.conn
        facts = frozen_store.live_fact_files(conn)
        snapshot_paths = frozen_store.snapshot_files(conn)
        figures = frozen_store.figures(conn)
        sealed = frozen_store.sealed_keys(conn)
        revision = frozen_store.revision(conn)
        rows = {name: ws.count(name, conn) for name in TABLES}
    files = [_entry(target, frozen.file)]
    reused = 0
    for relative in [f["path"] for f in facts] + snapshot_paths:
        source = ws.root / relative
        if not source.exists():
            raise _Vanished(relative)
        known = base_files.get(relative)
        if known is not None and known["bytes"] == source.stat().st_size:
            _link_or_copy(Path(str(base)) / "files" / relative, target / "files" / relative)
            files.append({**known, "reused": True})
            reused += known["bytes"]
        else:
            files.append(_copy(source, target, f"files/{relative}"))
    for relative in _plain_files(ws.root):
        files.append(_copy(ws.root / relative, target, f"files/{relative}"))
    assert ws.control.pii is not None and ws.control.audit is not None
    return {
        "format": FORMAT,
        "tierwise": version("tierwise"),
        "workspace": ws.config.name,
        "created_at": utcnow().isoformat(),
        "instant": frozen.instant.isoformat(),
        "control_store": {"dialect": frozen.dialect, "file": frozen.file,
                          "revision": revision},
        "base": base,
        "keys": {
            # sealed values name these; the current key also keys the search hashes
            "pii": sorted({*sealed, ws.control.pii.current_id}),
            "audit": ws.control.audit.key_id,
            "included": False,
        },
        "rows": rows,
        "figures": figures,
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "reused_bytes": reused,
    }


def _plain_files(root: Path) -> list[str]:
    found = [CONFIG_FILE]
    for folder in PLAIN_FOLDERS:
        found += sorted(p.relative_to(root).as_posix() for p in (root / folder).rglob("*")
                        if p.is_file())
    return found


def _base_files(base: Path) -> dict[str, dict[str, Any]]:
    manifest = read_manifest(base)
    return {f["path"][len("files/"):]: f for f in manifest["files"]
            if f["path"].startswith(("files/facts/", "files/snapshots/"))}


def _link_or_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except OSError:  # another file system
        shutil.copy2(source, dest)


def _copy(source: Path, target: Path, relative: str) -> dict[str, Any]:
    """Copy ``source`` to ``target/relative`` (in the kernel where it can) and hash the copy
    as written."""
    dest = target / relative
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(source, dest)
    except FileNotFoundError:
        raise _Vanished(relative) from None
    return _entry(target, relative)


def _entry(target: Path, relative: str) -> dict[str, Any]:
    size, digest = _hash(target / relative)
    return {"path": relative, "bytes": size, "sha256": digest}


def _hash(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(src: Path) -> dict[str, Any]:
    path = src / MANIFEST
    if not path.is_file():
        raise WorkspaceError(f"{src} is not a tierwise backup (no {MANIFEST}; a backup that "
                             "did not finish has none)",
                             zh=f"{src} 不是 tierwise 备份（没有 {MANIFEST}；"
                             "没有完成的备份没有它）")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WorkspaceError(f"{path}: not JSON ({exc})",
                             zh=f"{path}：不是 JSON（{exc}）") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WorkspaceError(f"{path}: expected a manifest of format {FORMAT}, got "
                             f"{manifest.get('format') if isinstance(manifest, dict) else '?'}",
                             zh=f"{path}：应为格式 {FORMAT} 的清单，实际为 "
                             f"{manifest.get('format') if isinstance(manifest, dict) else '?'}")
    _check_shape(path, manifest)
    return manifest


#: What a manifest must hold, and of which type (a damaged or hand-made one is refused
#: with the key named, before anything reads it).
_SHAPE: dict[str, type] = {"instant": str, "control_store": dict, "keys": dict, "rows": dict,
                           "figures": dict, "files": list, "bytes": int}
_CONTROL_FILES = {"sqlite": frozen_store.SQLITE_FILE, "postgresql": frozen_store.PG_FILE}


def _check_shape(path: Path, manifest: dict[str, Any]) -> None:
    def bad(what: str) -> NoReturn:
        raise WorkspaceError(f"{path}: {what}; the manifest is damaged",
                             zh=f"{path}：{what}；清单已损坏")

    for key, kind in _SHAPE.items():
        if not isinstance(manifest.get(key), kind):
            bad(f"{key!r} is missing or not a {kind.__name__}")
    control = manifest["control_store"]
    if _CONTROL_FILES.get(control.get("dialect")) != control.get("file"):
        bad(f"control_store names {control.get('dialect')!r} / {control.get('file')!r}")
    keys = manifest["keys"]
    if not isinstance(keys.get("pii"), list) or not isinstance(keys.get("audit"), str):
        bad("keys.pii or keys.audit is missing")
    for entry in manifest["files"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str)):
            bad(f"a file entry is not {{path, bytes, sha256}}: {str(entry)[:80]}")
    head = manifest["figures"].get("audit_head")
    if not (isinstance(head, list) and len(head) == 2):
        bad("figures.audit_head is missing")


# -- keys --------------------------------------------------------------------------------
def check_passphrase(passphrase: str | None) -> None:
    if not passphrase or len(passphrase) < MIN_PASSPHRASE:
        raise WorkspaceError(f"--include-keys needs a passphrase of at least {MIN_PASSPHRASE} "
                             f"characters (--passphrase-file FILE or ${ENV_PASSPHRASE})",
                             zh=f"--include-keys 需要至少 {MIN_PASSPHRASE} 个字符的口令"
                             f"（--passphrase-file FILE 或 ${ENV_PASSPHRASE}）")


def _kdf(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=32, n=2 ** 15, r=8, p=1)


def seal_keys(ws: Workspace, passphrase: str) -> bytes:
    """The workspace's keys (PII ring, audit key, webhook secret), encrypted under a key
    derived from ``passphrase`` (scrypt, AES-256-GCM)."""
    assert ws.control.pii is not None and ws.control.audit is not None
    webhook = ws.root / "keys" / "webhook.key"
    plain = json.dumps({
        "pii": ws.control.pii.exported(),
        "audit": {"key": base64.b64encode(ws.control.audit.key).decode(),
                  "keyed_from": ws.control.audit.keyed_from},
        "webhook": webhook.read_text().strip() if webhook.exists() else None,
    }).encode()
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    sealed = AESGCM(_kdf(salt).derive(passphrase.encode())).encrypt(nonce, plain,
                                                                   FORMAT.encode())
    return json.dumps({"kdf": "scrypt", "n": 2 ** 15, "r": 8, "p": 1,
                       "salt": base64.b64encode(salt).decode(),
                       "nonce": base64.b64encode(nonce).decode(),
                       "sealed": base64.b64encode(sealed).decode()}).encode()


def open_keys(path: Path, passphrase: str) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    try:
        key = _kdf(base64.b64decode(data["salt"])).derive(passphrase.encode())
        plain = AESGCM(key).decrypt(base64.b64decode(data["nonce"]),
                                    base64.b64decode(data["sealed"]), FORMAT.encode())
    except InvalidTag:
        raise WorkspaceError(f"{path}: wrong passphrase (or the file was changed)",
                             zh=f"{path}：口令错误（或文件被改动过）") from None
    found: dict[str, Any] = json.loads(plain)
    return found


def _available_keys(src: Path, manifest: dict[str, Any], keys_from: Path | None,
                    passphrase: str | None, config_paths: tuple[Path, Path]
                    ) -> tuple[dict[str, Any], list[str]]:
    """Keys from the backup's sealed bundle, ``keys_from``, the environment or absolute key
    files of the configuration, and where each was looked for."""
    looked: list[str] = []
    found: dict[str, Any] = {"pii": [], "audit": None, "webhook": None, "written": False}
    bundle = src / KEYS_FILE
    if bundle.exists():
        if passphrase:
            opened = open_keys(bundle, passphrase)
            found.update(pii=opened["pii"], audit=opened["audit"], webhook=opened["webhook"],
                         written=True)
            looked.append(f"{bundle} (opened)")
        else:
            looked.append(f"{bundle} (not opened: no passphrase given)")
    else:
        looked.append("the backup (made without --include-keys)")
    if keys_from is not None:
        pii_file, audit_file = keys_from / "pii.json", keys_from / "audit.json"
        looked.append(str(keys_from))
        if pii_file.exists():
            found["pii"] = [*found["pii"], *KeyRing.load(pii_file).exported()]
            found["written"] = True
        if audit_file.exists() and found["audit"] is None:
            key = load_audit_key(audit_file, None)
            found["audit"] = {"key": base64.b64encode(key.key).decode(),
                              "keyed_from": key.keyed_from}
            found["written"] = True
        if (keys_from / "webhook.key").exists() and found["webhook"] is None:
            found["webhook"] = (keys_from / "webhook.key").read_text().strip()
    ring = KeyRing.from_environment()
    looked.append(f"${ENV_KEY}" + ("" if ring else " (not set)"))
    if ring is not None:
        found["pii"] = [*found["pii"], *ring.exported()]
    env_audit = audit_key_from_environment()
    looked.append(f"${ENV_AUDIT_KEY}" + ("" if env_audit else " (not set)"))
    if env_audit is not None and found["audit"] is None:
        found["audit"] = {"key": base64.b64encode(env_audit.key).decode(), "env": True}
    pii_path, audit_path = config_paths
    if pii_path.is_absolute() and pii_path.exists():
        looked.append(str(pii_path))
        found["pii"] = [*found["pii"], *KeyRing.load(pii_path).exported()]
    if audit_path.is_absolute() and audit_path.exists() and found["audit"] is None:
        looked.append(str(audit_path))
        key = load_audit_key(audit_path, None)
        found["audit"] = {"key": base64.b64encode(key.key).decode(), "file": True}
    return found, looked


def _audit_id(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    return AuditKey(base64.b64decode(entry["key"]), 1).key_id


# -- verify ------------------------------------------------------------------------------
def verify(src: str | os.PathLike[str], passphrase: str | None = None) -> dict[str, Any]:
    """Check a backup: every file there with its size and checksum, the control store copy
    readable, and (with the passphrase) the sealed keys openable and complete. Returns the
    manifest's summary and ``problems`` (empty when the backup is sound)."""
    folder = Path(src).expanduser().resolve()
    manifest = read_manifest(folder)
    problems: list[str] = []
    listed = set()
    for f in manifest["files"]:
        relative = Path(f["path"])
        if relative.is_absolute() or ".." in relative.parts:
            problems.append(f"{f['path']}: a path outside the backup")
            continue
        listed.add(relative.as_posix())
        path = folder / relative
        if path.is_symlink():
            problems.append(f"{f['path']}: a symbolic link, not a file")
            continue
        if not path.is_file():
            problems.append(f"{f['path']}: missing")
            continue
        size, digest = _hash(path)
        if size != f["bytes"] or digest != f["sha256"]:
            problems.append(f"{f['path']}: {size:,} bytes, sha256 {digest[:12]}…; the "
                            f"manifest says {f['bytes']:,} bytes, {f['sha256'][:12]}…")
    for path in sorted((folder / "files").rglob("*")) if (folder / "files").is_dir() else []:
        relative_path = path.relative_to(folder).as_posix()
        if (path.is_file() or path.is_symlink()) and relative_path not in listed:
            problems.append(f"{relative_path}: not in the manifest")
    control = folder / manifest["control_store"]["file"]
    if control.is_file():
        try:
            if manifest["control_store"]["dialect"] == "sqlite":
                frozen_store.check_sqlite(control)
            else:
                frozen_store.pg_dump_list(control)
        except WorkspaceError as exc:
            problems.append(f"{control.name}: {exc}")
    keys = manifest["keys"]
    if keys.get("included") and passphrase:
        try:
            opened = open_keys(folder / KEYS_FILE, passphrase)
            have = {key_id_of_key(k) for k in opened["pii"]}
            lacking = [k for k in keys["pii"] if k not in have]
            if lacking or _audit_id(opened["audit"]) != keys["audit"]:
                problems.append(f"{KEYS_FILE}: does not hold every key the backup needs")
        except (WorkspaceError, OSError, ValueError, KeyError) as exc:
            problems.append(f"{KEYS_FILE}: {exc}")
    return {"path": str(folder), "instant": manifest["instant"],
            "files": len(manifest["files"]), "bytes": manifest["bytes"],
            "keys": keys, "problems": problems}


# -- restore -----------------------------------------------------------------------------
def restore(src: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            control_store: str | None = None, keys_from: str | None = None,
            passphrase: str | None = None) -> dict[str, Any]:
    """Rebuild the workspace a backup was taken of in the new folder ``dest``: the same
    answers as at the backup instant (checked before it is handed over), deliveries that
    were pending held, or nothing at all."""
    folder = Path(src).expanduser().resolve()
    target = Path(dest).expanduser().resolve()
    manifest = read_manifest(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WorkspaceError(f"{target} exists and is not empty; restore into a new folder",
                             zh=f"{target} 已存在且不是空的；请恢复到一个新文件夹")
    dialect = manifest["control_store"]["dialect"]
    if dialect == "postgresql" and not control_store:
        raise WorkspaceError("this backup's control store is PostgreSQL: name an empty "
                             "database to restore it into with --control-store "
                             "postgresql://user@host/db",
                             zh="这个备份的控制库是 PostgreSQL：请用 --control-store postgresql://"
                             "user@host/db 指定一个空数据库来恢复")
    if dialect == "sqlite" and control_store:
        raise WorkspaceError("this backup's control store is SQLite; it restores into the "
                             "workspace folder (leave out --control-store)",
                             zh="这个备份的控制库是 SQLite；它恢复到工作区文件夹中"
                             "（不要给 --control-store）")
    try:
        config = read_config(folder / "files")
    except WorkspaceError:
        _refuse_damaged(verify(folder)["problems"] or [f"{CONFIG_FILE} does not read"])
    root_paths = (Path(config.pii_key_file), Path(config.audit_key_file))
    keys, looked = _available_keys(folder, manifest, Path(keys_from) if keys_from else None,
                                   passphrase, root_paths)
    have = {key_id_of_key(k) for k in keys["pii"]}
    missing = [k for k in manifest["keys"]["pii"] if k not in have]
    audit_missing = _audit_id(keys["audit"]) != manifest["keys"]["audit"]
    if missing or audit_missing:
        parts = ([f"PII key {', '.join(missing)}"] if missing else []) + \
            ([f"audit key {manifest['keys']['audit']}"] if audit_missing else [])
        raise WorkspaceError(
            f"this backup needs {' and '.join(parts)}, which were not found; looked in "
            f"{'; '.join(looked)}. Give the key files with --keys-from DIR (pii.json and "
            "audit.json, as kept outside the workspace), set $TIERWISE_PII_KEY and "
            "$TIERWISE_AUDIT_KEY, or, for a backup made with --include-keys, its passphrase "
            f"(--passphrase-file FILE or ${ENV_PASSPHRASE}). Nothing was restored.",
            zh=f"这个备份需要 {' 和 '.join(parts)}，但没有找到；查找过：{'；'.join(looked)}。"
            "请用 --keys-from DIR 给出密钥文件（pii.json 和 audit.json，即保存在工作区之外的"
            "那些），或设置 $TIERWISE_PII_KEY 和 $TIERWISE_AUDIT_KEY；对用 --include-keys 做的"
            f"备份，也可以给出它的口令（--passphrase-file FILE 或 ${ENV_PASSPHRASE}）。"
            "没有恢复任何内容。")
    problems = verify(folder)["problems"]
    if problems:
        _refuse_damaged(problems)
    work = target.parent / f".{target.name}.restoring-{secrets.token_hex(4)}"
    filled_database = None
    try:
        shutil.copytree(folder / "files", work)
        if dialect == "sqlite":
            shutil.copy2(folder / frozen_store.SQLITE_FILE, work / "control.db")
            config = replace(config, control_store="sqlite:///control.db")
        else:
            assert control_store is not None
            frozen_store.restore_postgres(folder / frozen_store.PG_FILE, control_store)
            filled_database = control_store
            config = replace(config, control_store=control_store)
        if keys["written"]:
            write_key_file(work / "keys" / "pii.json", _ordered(keys["pii"],
                                                               manifest["keys"]["pii"]))
            _write_audit_key(work / "keys" / "audit.json", keys["audit"])
            config = replace(config, pii_key_file="keys/pii.json",
                             audit_key_file="keys/audit.json")
        if keys["webhook"]:
            write_private(work / "keys" / "webhook.key", keys["webhook"])
        write_config(work, config)
        report = _check_and_hold(work, manifest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if filled_database:
            frozen_store.drop_everything(filled_database)
        raise
    if target.exists():
        target.rmdir()
    os.replace(work, target)
    return {"path": str(target), "instant": manifest["instant"], **report}


def _refuse_damaged(problems: list[str]) -> NoReturn:
    raise WorkspaceError("the backup is damaged, nothing was restored: "
                         + "; ".join(problems[:10]),
                         zh="备份已损坏，没有恢复任何内容：" + "；".join(problems[:10]))


def _ordered(encoded: list[str], needed: list[str]) -> list[str]:
    """The key list with no repeats, the backup's current key first."""
    unique = list(dict.fromkeys(encoded))
    first = [k for k in unique if key_id_of_key(k) in needed[:1]]
    return first + [k for k in unique if k not in first]


def _write_audit_key(path: Path, entry: dict[str, Any]) -> None:
    if entry.get("env") or entry.get("file"):
        return  # it stays where it is
    write_private(path, json.dumps({"key": entry["key"], "keyed_from": entry["keyed_from"]}))


def _check_and_hold(root: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Open the restored workspace, compare its answers with the backup's figures, then hold
    the deliveries that were pending and record the restore in the audit log."""
    ws = Workspace.open(root)
    try:
        rows = {name: ws.count(name) for name in manifest["rows"]}
        with ws.control.read() as conn:
            figures = frozen_store.figures(conn)
            chain = audit.verify(conn, expect_head=tuple(manifest["figures"]["audit_head"])
                                 if manifest["figures"]["audit_head"][0] else None)
        differ = [f"{name}: {rows[name]:,} rows, the backup had {n:,}"
                  for name, n in manifest["rows"].items() if rows[name] != n]
        differ += [f"{name} differ from the backup's" for name, value in figures.items()
                   if _normal(value) != _normal(manifest["figures"][name])]
        if not chain.ok:
            differ.append(f"the audit chain does not verify: {chain.problem}")
        if differ:
            raise WorkspaceError("the restored workspace does not answer as the backup "
                                 "recorded, nothing was restored: " + "; ".join(differ),
                                 zh="恢复出的工作区与备份记录的结果不一致，没有恢复任何内容："
                                 + "；".join(differ))
        with ws.control.write() as conn:
            held = frozen_store.hold_pending(conn)
            audit.append(conn, "system:restore", "restore", None,
                         {"instant": manifest["instant"], "held_deliveries": held})
    finally:
        ws.close()
    return {"rows": rows, "segments": len(figures["segment_members"]),
            "audit_entries": chain.entries, "held_deliveries": held}


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value))
