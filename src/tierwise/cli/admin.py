"""CLI commands for the service and its guard rails: serve, users, keys, audit, privacy, PII."""

from __future__ import annotations

import getpass
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tierwise.cli.audit import actor, named_role, require
from tierwise.config import ENV_NAME
from tierwise.errors import TierwiseError
from tierwise.store import accounts, audit
from tierwise.store.control import utcnow
from tierwise.workspace import Workspace

out = Console(soft_wrap=True)
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", envvar="TIERWISE_WORKSPACE", help="Workspace folder.")]
users_app = typer.Typer(help="People who sign in to the API and dashboard.",
                        no_args_is_help=True)
keys_app = typer.Typer(help="API keys for machines.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit log.", no_args_is_help=True)
privacy_app = typer.Typer(help="Privacy rights: export, erase, retention.",
                          no_args_is_help=True)
pii_app = typer.Typer(help="Encryption of personal data at rest.", no_args_is_help=True)
secrets_app = typer.Typer(help="Credentials of SMS senders and chat robots, kept in the "
                          "workspace encrypted under the PII key.", no_args_is_help=True)


def _password(given: str | None) -> str:
    if given:
        return given
    env = os.environ.get("TIERWISE_PASSWORD")
    if env:
        return env
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise TierwiseError("the passwords differ",
                            zh="两次输入的密码不一致")
    return first


def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, typer.Option()] = 8000,
          workers: Annotated[int, typer.Option(
              help="Server processes (rate limits then apply per process).")] = 1,
          proxy_headers: Annotated[bool, typer.Option(
              help="Behind a reverse proxy that terminates HTTPS: take the client's address "
              "and scheme from X-Forwarded-For and X-Forwarded-Proto (only from "
              "--forwarded-allow-ips), so that cookies are Secure and redirects use "
              "https.")] = False,
          forwarded_allow_ips: Annotated[str, typer.Option(
              help="Proxies whose X-Forwarded-* headers are trusted (comma-separated "
              "addresses or networks).")] = "127.0.0.1",
          ssl_certfile: Annotated[Path | None, typer.Option(
              help="Serve HTTPS with this certificate (PEM) instead of a proxy.")] = None,
          ssl_keyfile: Annotated[Path | None, typer.Option(
              help="The certificate's private key (PEM).")] = None,
          log_format: Annotated[str, typer.Option(
              help="`text` for people, `json` for a log collector (one object per "
              "line).")] = "text",
          workspace: WorkspaceOpt = None) -> None:
    """Run the dashboard, the REST API, the real-time worker, the dispatcher and the
    scheduled jobs (`tierwise schedule`)."""
    import uvicorn

    from tierwise.server.app import create_app

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise TierwiseError("give both --ssl-certfile and --ssl-keyfile, or neither",
                            zh="--ssl-certfile 和 --ssl-keyfile 要么都给，要么都不给")
    if log_format not in ("text", "json"):
        raise TierwiseError(f"--log-format {log_format!r}: expected text or json",
                            zh=f"--log-format {log_format!r}：应为 text 或 json")
    os.environ["TIERWISE_LOG_FORMAT"] = log_format  # the worker's child process logs alike
    for path in (ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise TierwiseError(f"{path}: no such file",
                                zh=f"{path}：文件不存在")
    ws = Workspace.open(workspace)
    with ws.control.read() as conn:
        if not accounts.list_users(conn):
            out.print("[yellow]no users yet:[/] add one with `tierwise users add NAME --role "
                      "admin`")
    scheme = "https" if ssl_certfile else "http"
    out.print(f"tierwise for {ws.root}: dashboard on {scheme}://{host}:{port}/, API under /v1 "
              "(reference at /docs)")
    if scheme == "http" and not proxy_headers and host not in ("127.0.0.1", "::1",
                                                               "localhost"):
        out.print("[yellow]plain HTTP on a network address:[/] sign-in cookies are not "
                  "Secure; serve behind an HTTPS proxy with --proxy-headers, or give "
                  "--ssl-certfile and --ssl-keyfile (docs/api.md, Deployment)")
    options: dict[str, object] = {"host": host, "port": port, "log_level": "info",
                                  "server_header": False, "proxy_headers": proxy_headers,
                                  "forwarded_allow_ips": forwarded_allow_ips,
                                  # tierwise.access logs requests, without query values
                                  "access_log": False, "log_config": _log_config(log_format)}
    if ssl_certfile is not None:
        options.update(ssl_certfile=str(ssl_certfile), ssl_keyfile=str(ssl_keyfile))
    if workers > 1:  # each process opens the workspace itself
        os.environ["TIERWISE_WORKSPACE"] = str(ws.root)
        ws.close()
        uvicorn.run("tierwise.server.app:app_from_environment", factory=True, workers=workers,
                    **options)  # type: ignore[arg-type]
    else:
        uvicorn.run(create_app(ws, worker="process"), **options)  # type: ignore[arg-type]


def _log_config(log_format: str = "text") -> dict[str, object]:
    """uvicorn's logging, with tierwise's own loggers (the access log among them) on the
    same console; ``json``: every line one JSON object."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["tierwise"] = {"handlers": ["default"], "level": "INFO",
                                     "propagate": False}
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": "tierwise.server.metrics.JsonFormatter"}
    return config


@users_app.command("add")
def users_add(username: str,
              role: Annotated[str, typer.Option(help="admin, analyst, operator or viewer.")],
              owner: Annotated[str | None, typer.Option(
                  help="For operators: the owner value of their customers.")] = None,
              password: Annotated[str | None, typer.Option(
                  help="Prompted (or $TIERWISE_PASSWORD) when not given.")] = None,
              if_missing: Annotated[bool, typer.Option(
                  help="Do nothing when the user exists already.")] = False,
              workspace: WorkspaceOpt = None) -> None:
    """Add a user (the password is stored as an argon2id hash)."""
    ws = Workspace.open(workspace)
    if if_missing:
        with ws.control.read() as conn:
            if any(u["username"] == username for u in accounts.list_users(conn)):
                return
    secret = _password(password)
    with ws.control.write() as conn:
        accounts.add_user(conn, username, secret, role, owner)
        audit.append(conn, actor(), "user_add", f"user:{username}",
                     {"role": role, "owner_name": owner})
    out.print(f"added {username} ({role})")


@users_app.command("list")
def users_list(workspace: WorkspaceOpt = None) -> None:
    """Users, their roles and last sign-in."""
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("user", "role", "owner", "created", "last login", "disabled"):
        grid.add_column(name)
    with ws.control.read() as conn:
        for u in accounts.list_users(conn):
            grid.add_row(u["username"], u["role"], u["owner_name"] or "—",
                         f"{u['created_at']:%Y-%m-%d}",
                         f"{u['last_login_at']:%Y-%m-%d %H:%M}" if u["last_login_at"] else "—",
                         "yes" if u["disabled_at"] else "")
    out.print(grid)


def _set_user(workspace: Path | None, username: str, disabled: bool) -> None:
    ws = Workspace.open(workspace)
    with ws.control.write() as conn:
        accounts.set_user(conn, username, disabled=disabled)
        audit.append(conn, actor(), "user_change", f"user:{username}", {"disabled": disabled})


@users_app.command("disable")
def users_disable(username: str, workspace: WorkspaceOpt = None) -> None:
    """Disable a user and end their sessions."""
    _set_user(workspace, username, True)
    out.print(f"disabled {username}")


@users_app.command("enable")
def users_enable(username: str, workspace: WorkspaceOpt = None) -> None:
    """Enable a disabled user."""
    _set_user(workspace, username, False)
    out.print(f"enabled {username}")


@keys_app.command("create")
def keys_create(name: str,
                role: Annotated[str, typer.Option(help="admin, analyst, operator or viewer.")],
                scope: Annotated[list[str] | None, typer.Option(
                    help="Limit to these permissions (repeat); default: the role's.")] = None,
                days: Annotated[int, typer.Option(
                    help="Expire after N days (at most api_key_max_days).")]
                = accounts.DEFAULT_KEY_DAYS,
                no_expiry: Annotated[bool, typer.Option(
                    "--no-expiry", help="A key that never expires (admins only; audited).")]
                = False,
                rate: Annotated[float, typer.Option(help="Requests per second.")]
                = accounts.DEFAULT_KEY_RATE,
                owner: Annotated[str | None, typer.Option()] = None,
                workspace: WorkspaceOpt = None) -> None:
    """Create an API key. The key is printed once and stored only as a hash."""
    ws = Workspace.open(workspace)
    require(ws, "users:admin", "create API keys")
    if days < 1:
        raise TierwiseError(f"--days {days}: a key lives at least 1 day (--no-expiry, for an "
                            "admin, makes one that never expires)",
                            zh=f"--days {days}：密钥至少有效 1 天（管理员可用 --no-expiry "
                            "创建永不过期的密钥）")
    expires = None if no_expiry else utcnow() + timedelta(days=days)
    try:
        with ws.control.write() as conn:
            new = accounts.create_key(conn, name, role, actor(), scopes=scope,
                                      expires_at=expires, owner_name=owner,
                                      rate_per_second=rate, no_expiry=no_expiry,
                                      max_days=ws.config.api_key_max_days,
                                      creator_role=named_role(ws))
            audit.append(conn, actor(), "key_create", f"key:{new.key_id}",
                         {"role": role, "scopes": scope, "expires_at": expires,
                          "no_expiry": no_expiry})
    except ValueError as exc:
        raise TierwiseError(str(exc)) from None
    out.print(f"key {new.key_id} ({role}" + (f", expires {expires:%Y-%m-%d}" if expires else "")
              + "); store it now, it is not shown again:")
    print(new.secret)


@keys_app.command("list")
def keys_list(workspace: WorkspaceOpt = None) -> None:
    """API keys (never their secrets)."""
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("id", "name", "role", "expires", "revoked", "last used"):
        grid.add_column(name)
    with ws.control.read() as conn:
        for k in accounts.list_keys(conn):
            grid.add_row(k["key_id"], k["name"], k["role"],
                         f"{k['expires_at']:%Y-%m-%d}" if k["expires_at"] else "never",
                         "yes" if k["revoked_at"] else "",
                         f"{k['last_used_at']:%Y-%m-%d %H:%M}" if k["last_used_at"] else "—")
    out.print(grid)


@keys_app.command("revoke")
def keys_revoke(key_id: str, workspace: WorkspaceOpt = None) -> None:
    """Revoke an API key at once."""
    ws = Workspace.open(workspace)
    with ws.control.write() as conn:
        accounts.revoke_key(conn, key_id)
        audit.append(conn, actor(), "key_revoke", f"key:{key_id}", {})
    out.print(f"revoked {key_id}")


@audit_app.command("verify")
def audit_verify(expect_head: Annotated[str | None, typer.Option(
                     help="SEQ:HASH printed by an earlier verify, to detect truncation.")]
                 = None,
                 workspace: WorkspaceOpt = None) -> None:
    """Check the hash chain; exit 1 on any edited, deleted or missing entry."""
    ws = Workspace.open(workspace)
    expected = None
    if expect_head:
        seq, _, digest = expect_head.partition(":")
        expected = (int(seq), digest)
    with ws.control.read() as conn:
        result = audit.verify(conn, expected)
    if not result.ok:
        out.print(f"[red]audit log is broken:[/] {result.problem}")
        raise typer.Exit(1)
    out.print(f"audit log intact: {result.entries:,} entries; head "
              f"{result.head_seq}:{result.head_hash}")


@audit_app.command("show")
def audit_show(limit: int = 30, actor: str | None = None, action: str | None = None,
               workspace: WorkspaceOpt = None) -> None:
    """The newest audit entries."""
    ws = Workspace.open(workspace)
    grid = Table()
    for name in ("seq", "at", "actor", "action", "target", "from", "detail"):
        grid.add_column(name)
    with ws.control.read() as conn:
        for e in audit.entries(conn, limit=limit, actor=actor, action=action):
            grid.add_row(str(e["seq"]), f"{e['at'].astimezone(ws.config.zone):%Y-%m-%d %H:%M:%S}",
                         e["actor"], e["action"], e["target"] or "", e["client"] or "",
                         json.dumps(e["detail"], ensure_ascii=False)[:80])
    out.print(grid)


@privacy_app.command("export")
def privacy_export(customer_id: str,
                   out_file: Annotated[Path, typer.Option("--out", help="JSON file to write.")],
                   workspace: WorkspaceOpt = None) -> None:
    """Everything held about a customer, as JSON (a subject-access request)."""
    from tierwise.definitions.json_values import jsonable
    from tierwise.security.privacy import export_customer

    ws = Workspace.open(workspace)
    data = export_customer(ws, customer_id)
    out_file.write_text(json.dumps(jsonable(data), ensure_ascii=False, indent=2),
                        encoding="utf-8")
    with ws.control.write() as conn:
        audit.append(conn, actor(), "export_pii", f"customer:{customer_id}",
                     {"kind": "subject_access", "file": str(out_file)})
    out.print(f"wrote {out_file}")


@privacy_app.command("erase")
def privacy_erase(customer_id: str,
                  yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
                  workspace: WorkspaceOpt = None) -> None:
    """Erase a customer everywhere: control store, facts, snapshots, reports."""
    from tierwise.security.privacy import erase_customer

    ws = Workspace.open(workspace)
    if not yes and not typer.confirm(f"erase {customer_id} everywhere? this cannot be undone"):
        raise typer.Exit(1)
    result = erase_customer(ws, customer_id)
    with ws.control.write() as conn:
        audit.append(conn, actor(), "erase_customer", result.customer_ref, vars(result))
    facts = sum(result.fact_rows.values())
    out.print(f"erased {customer_id}: {result.control_rows} control-store rows, {facts} fact "
              f"rows, {result.snapshot_rows} snapshot rows, {result.report_lines} report lines")


@privacy_app.command("retention")
def privacy_retention(keep: Annotated[list[str], typer.Option(
                          help="TABLE=DAYS, e.g. events=365 (repeat).")],
                      workspace: WorkspaceOpt = None) -> None:
    """Delete facts older than the given number of days."""
    from tierwise.security.privacy import apply_retention

    days = {}
    for item in keep:
        table, _, value = item.partition("=")
        if not value.isdigit():
            raise TierwiseError(f"--keep {item!r}: expected TABLE=DAYS, e.g. events=365",
                                zh=f"--keep {item!r}：应为 表=天数，例如 events=365")
        days[table] = int(value)
    ws = Workspace.open(workspace)
    done = apply_retention(ws, days)
    with ws.control.write() as conn:
        audit.append(conn, actor(), "retention", None, {"days": days, "deleted": done})
    for table, rows in done.items():
        out.print(f"{table}: deleted {rows:,} rows older than {days[table]} days")


@pii_app.command("rotate-key")
def pii_rotate(keep_old: Annotated[bool, typer.Option(
                   help="Keep the old keys in the key file after re-encrypting.")] = False,
               workspace: WorkspaceOpt = None) -> None:
    """Re-encrypt all personal data under a new key."""
    from tierwise.security.rotation import rotate

    ws = Workspace.open(workspace)
    result = rotate(ws, drop_old=not keep_old)
    with ws.control.write() as conn:
        audit.append(conn, actor(), "pii_key_rotate", None,
                     {"key_id": result["key_id"], "customers": result["customers"]})
    out.print(f"re-encrypted {result['customers']:,} customers and {result['cleaning_log']:,} "
              f"cleaning-log values under key {result['key_id']} ({result['key_source']})")


@secrets_app.command("set")
def secrets_set(name: Annotated[str, typer.Argument(
                    help="The name a setting gives it (secret_env, key_id_env, url_env).")],
                workspace: WorkspaceOpt = None) -> None:
    """Keep a credential in the workspace, encrypted; the value is read from standard
    input (or asked for, hidden), never from the command line. An environment variable
    of the same name still wins."""
    import sys

    from tierwise.store import channel_secrets

    if not ENV_NAME.match(name):
        raise TierwiseError(f"{name!r}: a credential's name is upper-case letters, digits "
                            "and _ (TW_SMS_SECRET)",
                            zh=f"{name!r}：凭据名称由大写字母、数字和 _ 组成（TW_SMS_SECRET）")
    value = (getpass.getpass(f"{name}: ") if sys.stdin.isatty()
             else sys.stdin.read()).strip()
    if not value:
        raise TierwiseError(f"no value for {name} on standard input",
                            zh=f"标准输入中没有 {name} 的值")
    ws = Workspace.open(workspace)
    with ws.control.write() as conn:
        channel_secrets.put(conn, name, value, actor(), utcnow())
        audit.append(conn, actor(), "secret_set", f"secret:{name}", {})
    out.print(f"{name} kept, encrypted; channels read it within 30 s")


@secrets_app.command("list")
def secrets_list(workspace: WorkspaceOpt = None) -> None:
    """The credentials kept (names, when and by whom; never the values)."""
    from tierwise.store import channel_secrets

    ws = Workspace.open(workspace)
    with ws.control.read() as conn:
        rows = channel_secrets.listing(conn)
    table = Table("name", "set at", "by", "overridden by the environment")
    for r in rows:
        table.add_row(str(r["name"]), f"{r['updated_at']:%Y-%m-%d %H:%M}", str(r["updated_by"]),
                      "yes" if os.environ.get(str(r["name"])) else "")
    out.print(table)


@secrets_app.command("delete")
def secrets_delete(name: str, workspace: WorkspaceOpt = None) -> None:
    """Forget a kept credential."""
    from tierwise.store import channel_secrets

    ws = Workspace.open(workspace)
    with ws.control.write() as conn:
        if not channel_secrets.delete(conn, name):
            raise TierwiseError(f"no kept credential {name!r}", zh=f"没有保存名为 {name!r} 的凭据")
        audit.append(conn, actor(), "secret_delete", f"secret:{name}", {})
    out.print(f"{name} deleted")


@pii_app.command("new-key")
def pii_new_key(workspace: WorkspaceOpt = None) -> None:
    """Create a PII key for a workspace that has lost its key before storing anything
    encrypted (refused when data is encrypted: restore the key instead)."""
    from tierwise.workspace import new_pii_key

    ws = new_pii_key(workspace)
    assert ws.control.pii is not None
    out.print(f"created PII key {ws.control.pii.current_id} ({ws.control.pii.source}); "
              "keep a copy where you keep backups")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.add_typer(privacy_app, name="privacy")
    app.add_typer(pii_app, name="pii")
    app.add_typer(secrets_app, name="secrets")
