"""Money actions: budgets and the rate card, set by team admins and staff."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from studio.models import Budget, Rate, RateSource


def do_set_budget(team, user, monthly_usd, *, by):
    """Set the monthly budget of a team (`user` None) or of one member in it; `monthly_usd` None removes it.

    The budget row is updated in place (a hold in progress holds its lock, so this waits for it); two admins
    creating the same budget at once end with one row and the later amount.
    """
    rows = Budget.objects.filter(team=team, user=user)
    if monthly_usd is None:
        rows.delete()
        return None
    now = timezone.now()
    for _attempt in range(2):
        try:
            with transaction.atomic():
                if rows.update(monthly_usd=monthly_usd, updated_at=now, updated_by=by):
                    return rows.get()
                return Budget.objects.create(
                    team=team, user=user, monthly_usd=monthly_usd, updated_at=now, updated_by=by
                )
        except IntegrityError:  # another admin created it in the meantime: update theirs
            continue
    raise RuntimeError("The budget kept changing while it was being set.")  # pragma: no cover


def do_set_rate(rate, usd_per_second, *, by):
    """Set a line of the rate card; an admin's figure is kept when the gateway shows another one."""
    Rate.objects.filter(pk=rate.pk).update(
        usd_per_second=usd_per_second, source=RateSource.ADMIN, updated_by=by, updated_at=timezone.now()
    )
    rate.refresh_from_db()
    return rate
