"""Who may see what: an operator's role and customer scope (sans-IO).

Every operator credential — an API token or a console account — resolves to one `Scope`.
Queries filter by it in the query itself (`Scope.where`), so an out-of-scope row is never
loaded; a resource outside the scope is answered 404, exactly as one that does not exist.

Roles:
* dealer-admin: every customer; may create customers, sites, tokens and accounts.
* dealer-staff: the customers listed; may acknowledge and resolve alerts, move devices of them.
* customer-viewer: one customer, read only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import true

DEALER_ADMIN = "dealer-admin"
DEALER_STAFF = "dealer-staff"
CUSTOMER_VIEWER = "customer-viewer"
ROLES = (DEALER_ADMIN, DEALER_STAFF, CUSTOMER_VIEWER)

CUSTOMER_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


class ScopeError(ValueError):
    """A role or customer list that cannot make a valid scope."""


def check_customer_id(value: str) -> str:
    if not CUSTOMER_ID.fullmatch(value):
        raise ScopeError(
            f"customer id {value!r}: use 1-64 lower-case letters, digits and inner hyphens"
        )
    return value


@dataclass(frozen=True)
class Scope:
    role: str
    customers: frozenset[str] = frozenset()  # ignored for dealer-admin (all customers)
    operator: str = ""  # the token's or account's name: who acknowledged, moved, created

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ScopeError(f"unknown role {self.role!r}; one of {', '.join(ROLES)}")
        if self.role == CUSTOMER_VIEWER and len(self.customers) != 1:
            raise ScopeError("a customer viewer has exactly one customer")
        if self.role == DEALER_STAFF and not self.customers:
            raise ScopeError("dealer staff need at least one customer")
        for c in self.customers:
            check_customer_id(c)

    @property
    def all_customers(self) -> bool:
        return self.role == DEALER_ADMIN

    @property
    def can_write(self) -> bool:
        """Acknowledge/resolve alerts, move devices and agents among its customers."""
        return self.role != CUSTOMER_VIEWER

    @property
    def can_admin(self) -> bool:
        """Create customers, sites, enrollment and operator tokens, accounts."""
        return self.role == DEALER_ADMIN

    def allows(self, customer_id: str | None) -> bool:
        if self.all_customers:
            return True
        return customer_id is not None and customer_id in self.customers

    def where(self, column: Any) -> Any:
        """A SQL condition limiting `column` (a customer id column) to this scope."""
        if self.all_customers:
            return true()
        return column.in_(sorted(self.customers))

    def encode(self) -> str:
        """The stored form of the customer list (space separated; empty for dealer-admin)."""
        return "" if self.all_customers else " ".join(sorted(self.customers))

    @classmethod
    def decode(cls, role: str, customers: str | None, operator: str = "") -> Scope:
        return cls(role, frozenset((customers or "").split()), operator)


ADMIN = Scope(DEALER_ADMIN, operator="system")
