"""Who runs a CLI command, and the audit entries of what they change.

The actor of a CLI command is ``cli:<operating-system user>``, or ``cli:<os user> as <name>``
when ``--actor NAME`` (or ``$TIERWISE_ACTOR``) names the person or system acting: the OS
user is who could run it, the name is who says they did.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from tierwise.store import audit
from tierwise.workspace import Workspace

ENV_ACTOR = "TIERWISE_ACTOR"
_named: list[str | None] = [None]


def os_user() -> str:
    """The operating-system user running this process (not ``$USER``, which may be unset
    or set to anything)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError, OSError):
        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return f"uid-{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def set_named(name: str | None) -> None:
    _named[0] = name.strip() if name and name.strip() else None


def actor() -> str:
    named = _named[0] or os.environ.get(ENV_ACTOR, "").strip() or None
    return f"cli:{os_user()}" + (f" as {named[:80]}" if named else "")


def _named_user(ws: Workspace) -> dict[str, Any] | None:
    from tierwise.store import accounts

    named = _named[0] or os.environ.get(ENV_ACTOR, "").strip() or None
    if named is None:
        return None
    with ws.control.read() as conn:
        return next((u for u in accounts.list_users(conn) if u["username"] == named), None)


def named_role(ws: Workspace) -> str:
    """The role the command runs with: the named user's, else admin (whoever can read the
    workspace and its keys)."""
    user = _named_user(ws)
    return str(user["role"]) if user is not None else "admin"


def require(ws: Workspace, permission: str, doing: str) -> None:
    """Refuse ``doing`` when ``--actor`` names a tierwise user whose role lacks
    ``permission`` (a disabled user may do nothing). Without a named user the command runs
    with the rights of whoever can read the workspace and its keys, and the audit entry
    says which operating-system user that was."""
    from tierwise.definitions.roles import ROLES
    from tierwise.errors import ForbiddenError

    user = _named_user(ws)
    if user is None:
        return  # no name, or a system or person without a tierwise account: recorded
    disabled = user.get("disabled_at") is not None
    if disabled or permission not in ROLES[user["role"]]:
        state = f"{user['role']}, disabled" if disabled else user["role"]
        raise ForbiddenError(f"{user['username']} ({state}) may not {doing} (needs "
                             f"{permission})",
                             zh=f"{user['username']}（{state}）无权{doing}（需要 {permission}）")


def record(ws: Workspace, action: str, target: str | None = None,
           detail: dict[str, Any] | None = None) -> None:
    """An audit entry for something a CLI command did, in its own transaction."""
    with ws.control.write() as conn:
        audit.append(conn, actor(), action, target, detail)
