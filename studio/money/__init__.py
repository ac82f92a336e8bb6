"""Money: the rate card, budgets with holds, the append-only ledger, and the reports read from it.

- `ledger`: the live rate card and `quote()`, budgets (`hold()` at submit, `BudgetExceeded`), the one outcome of
  a hold (`settle()`, `settle_missing()` for the sweep), and the rule saying which holds still hold money.
- `reports`: spend per day, user, model and tag; budget bars; reconciliation (bills off the estimate, stuck
  holds); the ledger's CSV rows. Reads only.
- `chart`: the spend-per-day chart's SVG geometry (pure).
- `params`: the month and tolerance read from a query string.

Whose money a user may see is decided in `studio.access` (`money_scope_for_user`). Import the modules, e.g.
`from studio.money import ledger`; this package re-exports nothing.
"""
