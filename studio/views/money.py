"""Views for money (issue 5): spend, budgets, the rate card, reconciliation, the ledger export."""

from __future__ import annotations

urlpatterns: list = []
