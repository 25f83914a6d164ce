"""What a SMART access token may read, from its `scope` (SMART App Launch 2.x, "Scopes for
requesting clinical data"), so that no query is sent that the token cannot make.

Both syntaxes are read: v1 `patient/Observation.read` (`.read`, `.write`, `.*`) and v2
`patient/Observation.rs` (any of `c r u d s`, in that order). `patient/`, `user/` and
`system/` all count, and `*` stands for every type. Permissions add up across a grant: one
split as `patient/Observation.r patient/Observation.s` is `.rs`. A v2 scope narrowed by a
query (`patient/Observation.rs?category=laboratory`) counts for its type: the server applies
the narrowing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

READ = "r"
SEARCH = "s"
_COMPARTMENTS = frozenset({"patient", "user", "system"})
_V1 = {"read": frozenset({READ, SEARCH}), "write": frozenset("cud"), "*": frozenset("cruds")}
_V2_LETTERS = frozenset("cruds")


@dataclass(frozen=True, slots=True)
class Grant:
    """The permissions of a scope string, by resource type (`*` for every type)."""

    permissions: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, scope: str) -> Grant:
        permissions: dict[str, set[str]] = {}
        for item in scope.split():
            resource, allowed = _resource_scope(item)
            if resource:
                permissions.setdefault(resource, set()).update(allowed)
        return cls({name: frozenset(allowed) for name, allowed in permissions.items()})

    def allows(self, resource_type: str, *, search: bool) -> bool:
        """Whether the token may search (or, with search=False, read by id) this type."""
        wanted = SEARCH if search else READ
        for name in (resource_type, "*"):
            if wanted in self.permissions.get(name, frozenset()):
                return True
        return False


def _resource_scope(item: str) -> tuple[str, frozenset[str]]:
    """(`Observation`, {"r", "s"}) for `patient/Observation.rs`; ("", {}) for anything else
    (`launch`, `openid`, `fhirUser`, `offline_access`, malformed scopes)."""
    compartment, slash, rest = item.partition("/")
    resource, dot, permission = rest.partition(".")
    if not slash or not dot or compartment not in _COMPARTMENTS or not resource:
        return "", frozenset()
    permission = permission.split("?", 1)[0]
    if permission in _V1:
        return resource, _V1[permission]
    # SMART 2.x writes the letters in the order c r u d s; a server that writes them in
    # another order still means them (smart-launcher-v2 accepts `[cruds]+`)
    if permission and set(permission) <= _V2_LETTERS:
        return resource, frozenset(permission)
    return "", frozenset()


def scope_covers(scope: str, resource_type: str, *, search: bool = True) -> bool:
    """Whether a granted scope string lets its holder search (or read) a resource type."""
    return Grant.parse(scope).allows(resource_type, search=search)
