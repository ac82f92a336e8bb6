"""Renders that wait on an operator have a way back: attach, not sent (or send again), recheck, cancel, and the
credentials alert whose resolution sends what waited on it. Each action is a conditional update, safe to repeat,
and settles the money exactly once."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from studio.gateway.client import GatewayClient
from studio.lifecycle.submit import submit_step
from studio.lifecycle.sweep import sweep
from studio.models import GatewayAlert, LedgerEntry, LedgerKind, Render, State
from tests.conftest import fresh, poll_until, wait_for
from tests.fixtures import submit_render

pytestmark = pytest.mark.django_db(transaction=True)

SORA2 = {"model": "sora2", "prompt": "A lighthouse in fog", "duration_seconds": 5}


def submit(user, **fields) -> Render:
    return submit_render(user, {**SORA2, **fields})


def renders(*args) -> str:
    out = StringIO()
    call_command("renders", *args, stdout=out)
    return out.getvalue()


def ledger(render: Render) -> list[tuple[str, str]]:
    return [(e.kind, str(e.amount)) for e in LedgerEntry.objects.filter(render=render).order_by("pk")]


def open_alert(kind: str, render: Render | None = None) -> bool:
    alerts = GatewayAlert.objects.filter(kind=kind, resolved_at__isnull=True)
    return (alerts.filter(render=render) if render else alerts).exists()


def stranded_before_sending(owner, queue) -> Render:
    """A render the cluster died on while it said `submitting`, before sending: the sweep makes it unknown."""
    render = submit(owner)
    long_ago = timezone.now() - timedelta(seconds=settings.GATEWAY_TIMEOUT["read"] + 61)
    Render.objects.filter(pk=render.pk).update(state=State.SUBMITTING, updated_at=long_ago)
    assert sweep()["submit_unknown"] == 1
    return fresh(render)


def dropped_after_sending(owner, queue, gateway) -> tuple[Render, str]:
    """A render whose submission reached the gateway but whose answer was lost: unknown, with a task there."""
    known = set(gateway.tasks())
    gateway.add_fault("submit", kind="drop")
    render = submit(owner)
    queue.run()
    render = fresh(render)
    assert render.state == State.SUBMIT_UNKNOWN
    (task_id,) = set(gateway.tasks()) - known
    return render, task_id


def test_a_render_that_never_reached_the_gateway_is_released_by_not_sent(gateway, owner, queue):
    render = stranded_before_sending(owner, queue)
    assert ledger(render) == [("hold", "0.5000")]

    message = renders("not-sent", str(render.pk))
    render = fresh(render)

    assert "hold is released" in message
    assert render.state == State.FAILED
    assert "never reached the gateway" in render.error
    assert ledger(render) == [("hold", "0.5000"), ("release", "0.0000")]
    assert not open_alert(GatewayAlert.Kind.SUBMIT_UNKNOWN, render)
    with pytest.raises(CommandError):  # safe to repeat: the second time changes nothing
        renders("not-sent", str(render.pk))
    assert ledger(render) == [("hold", "0.5000"), ("release", "0.0000")]


def test_not_sent_with_resubmit_sends_the_same_render_once_more(gateway, owner, queue):
    render = stranded_before_sending(owner, queue)
    before = gateway.submissions

    renders("not-sent", str(render.pk), "--resubmit")
    queue.run(twice=True)

    render = fresh(render)
    assert render.state not in (State.SUBMIT_UNKNOWN, State.FAILED)
    assert render.gateway_task_id
    assert gateway.submissions - before == 1
    assert ledger(render)[0] == ("hold", "0.5000")  # the same hold carries the new attempt
    assert [kind for kind, _ in ledger(render)].count("hold") == 1


def test_attach_polls_the_gateways_task_and_settles_once(gateway, owner, queue, api):
    render, task_id = dropped_after_sending(owner, queue, gateway)
    before = gateway.submissions

    message = renders("attach", str(render.pk), task_id)
    render = poll_until(fresh(render), api, lambda r: r.state == State.DOWNLOADING)
    queue.run()
    sweep()

    render = fresh(render)
    assert "polled from now on" in message
    assert render.state == State.COMPLETED
    assert render.gateway_task_id == task_id
    assert gateway.submissions == before  # nothing was sent again
    assert [kind for kind, _ in ledger(render)] == [LedgerKind.HOLD, LedgerKind.SETTLE]
    assert not open_alert(GatewayAlert.Kind.SUBMIT_UNKNOWN, render)
    with pytest.raises(CommandError):
        renders("attach", str(render.pk), task_id)


def test_attach_refuses_a_task_that_belongs_to_another_render(gateway, owner, queue, api):
    render, task_id = dropped_after_sending(owner, queue, gateway)
    other = submit(owner, prompt="Another")
    Render.objects.filter(pk=other.pk).update(gateway_task_id=task_id)

    with pytest.raises(CommandError, match="belongs to another render"):
        renders("attach", str(render.pk), task_id)
    assert fresh(render).state == State.SUBMIT_UNKNOWN


def test_recheck_resumes_a_stalled_render_the_gateway_still_has(gateway, owner, queue, api, settings):
    render = submit(owner)
    queue.run()
    Render.objects.filter(pk=render.pk).update(
        state=State.STALLED, finished_at=timezone.now(), next_poll_at=None
    )
    GatewayAlert.raise_alert(GatewayAlert.Kind.STALLED, "stalled", render=render)

    message = renders("recheck", str(render.pk))
    render = poll_until(fresh(render), api, lambda r: r.state == State.DOWNLOADING)
    queue.run()

    assert "The gateway says" in message
    assert fresh(render).state == State.COMPLETED
    assert not open_alert(GatewayAlert.Kind.STALLED, render)
    assert [kind for kind, _ in ledger(render)] == [LedgerKind.HOLD, LedgerKind.SETTLE]


def test_recheck_that_the_gateway_cannot_answer_changes_nothing(gateway, owner, queue):
    render = submit(owner)
    queue.run()
    Render.objects.filter(pk=render.pk).update(state=State.STALLED, finished_at=timezone.now())
    gateway.add_fault("poll", status=404)

    with pytest.raises(CommandError, match="did not answer"):
        renders("recheck", str(render.pk))
    assert fresh(render).state == State.STALLED


def test_the_cancel_action_does_what_the_owners_button_does(gateway, owner, queue):
    render = submit(owner)

    message = renders("cancel", str(render.pk))

    assert "nothing was billed" in message
    assert fresh(render).state == State.CANCELLED


def test_resolving_the_credentials_alert_sends_the_waiting_renders_at_once(gateway, owner, queue):
    gateway.add_fault("submit", status=401)
    render = submit(owner)
    queue.run()
    assert fresh(render).error_code == "credentials"
    before = gateway.submissions

    out = StringIO()
    call_command("alerts", "resolve", "--kind", "credentials", stdout=out)
    ran = queue.run()  # the poller the resolution started re-sends the due submission now

    assert "1 waiting render(s) sent now" in out.getvalue()
    assert "run_poller" in [name for name, _ in ran]  # the resolution started the poller
    assert gateway.submissions - before == 1
    assert fresh(render).gateway_task_id
    assert not open_alert(GatewayAlert.Kind.CREDENTIALS)


def test_renders_json_shows_what_the_ledger_settled(gateway, owner, queue):
    class Unreported(GatewayClient):  # Sora 2's poll does not document `credits`
        def poll(self, model, task_id):
            return dataclasses.replace(super().poll(model, task_id), billed_credits=None)

    render = submit(owner)
    with Unreported() as client:
        assert submit_step(render.pk, client) == "submitted"
        poll_until(fresh(render), client, lambda r: r.state == State.DOWNLOADING)
    queue.run()
    waiting = submit(owner, prompt="Still holding")

    rows = {row["id"]: row for row in json.loads(renders("--json"))}

    done = rows[str(render.pk)]
    assert done["state"] == State.COMPLETED
    assert done["billed_cost"] is None  # the gateway reported no bill
    assert done["settled_cost"] == "0.5000"  # so the ledger settled the estimate
    assert rows[str(waiting.pk)]["settled_cost"] is None


@pytest.mark.cluster
def test_through_a_real_cluster_resolving_the_credentials_alert_sends_the_waiting_render_at_once(
    cluster, gateway, owner
):
    gateway.add_fault("submit", status=401)
    cluster.start()
    render = submit(owner)

    def waiting_on_credentials():
        """the render waits on the credentials alert (for five minutes unless it is resolved)"""
        return fresh(render).error_code == "credentials"

    wait_for(waiting_on_credentials, timeout=60)
    call_command("alerts", "resolve", "--kind", "credentials", stdout=StringIO())

    def sent():
        """the render reached the gateway"""
        return fresh(render).gateway_task_id

    wait_for(sent, timeout=60)  # far sooner than the five-minute pause
    assert not open_alert(GatewayAlert.Kind.CREDENTIALS)
