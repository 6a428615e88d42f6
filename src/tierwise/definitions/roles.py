"""Roles and permissions as data: what each role may do, checked by every API route."""

from __future__ import annotations

from dataclasses import dataclass, field

from tierwise.errors import Invalid

#: Every permission, with what it allows.
PERMISSIONS: dict[str, str] = {
    "customers:read": "list, search and view customers and their profiles (PII masked)",
    "customers:write": "create and update customers",
    "imports:write": "upload files into the workspace",
    "pii:read": "see name, e-mail, phone and address of every customer",
    "pii:own": "see name, e-mail, phone and address of the customers one owns",
    "pii:export": "export member lists and profiles with PII",
    "segments:read": "see segments, their members, history and explanations",
    "segments:write": "define, change and evaluate segments",
    "values:read": "see RFM, tiers, lifecycle, CLV and snapshots",
    "values:write": "run computations and change value settings",
    "actions:run": "run actions and work on tasks",
    "quality:read": "see the data-quality report",
    "audit:read": "read and verify the audit log",
    "privacy:admin": "export or erase everything held about a customer; retention",
    "users:admin": "manage users and API keys",
    "metrics:read": "read the service's metrics (/metrics): counts and latencies only",
}

_READ = {"customers:read", "segments:read", "values:read", "quality:read", "metrics:read"}

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "analyst": frozenset(_READ | {"customers:write", "imports:write", "pii:read", "pii:export",
                                  "segments:write", "values:write"}),
    "operator": frozenset(_READ | {"pii:own", "actions:run"}),
    "viewer": frozenset(_READ),
}


def check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid(f"unknown role {role!r}; expected one of {', '.join(ROLES)}",
                      zh=f"未知角色 {role!r}：应为 {', '.join(ROLES)} 之一")
    return role


def check_scopes(role: str, scopes: list[str] | None) -> list[str]:
    """Scopes of an API key: a subset of its role's permissions (default: all of them)."""
    allowed = ROLES[check_role(role)]
    if scopes is None:
        return sorted(allowed)
    unknown = sorted(set(scopes) - set(PERMISSIONS))
    if unknown:
        raise Invalid(f"unknown scope(s) {', '.join(unknown)}; expected some of "
                      f"{', '.join(PERMISSIONS)}",
                      zh=f"未知权限范围 {', '.join(unknown)}：可用的有 {', '.join(PERMISSIONS)}")
    beyond = sorted(set(scopes) - allowed)
    if beyond:
        raise Invalid(f"role {role} does not have {', '.join(beyond)}",
                      zh=f"角色 {role} 没有 {', '.join(beyond)} 权限")
    return sorted(set(scopes))


@dataclass(frozen=True)
class Principal:
    """Who is asking: a signed-in user or an API key, with the permissions in force."""

    kind: str  # "user" or "key"
    name: str  # username or key id
    role: str
    permissions: frozenset[str]
    owner_name: str | None = None
    csrf_token: str | None = None  # set for session (cookie) logins
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def sees_pii_of(self, owner: str | None) -> bool:
        if "pii:read" in self.permissions:
            return True
        return ("pii:own" in self.permissions and self.owner_name is not None
                and owner == self.owner_name)
