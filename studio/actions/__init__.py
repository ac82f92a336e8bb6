"""Writes with side effects: every one goes through a `do_*` function that owns its transaction and queueing.

They take cleaned data (a `RenderOrder`, a role, an amount), never a form: forms belong to the web layer.
- `renders`: submit, cancel, re-run, privacy; `review`: reviews and comments; `gallery`: stars and tags;
- `teams`: teams and memberships; `money`: budgets and the rate card; `shares`: share links outside the team.
"""
