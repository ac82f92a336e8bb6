"""What the pages show of renders off the happy path, and the operator actions they offer staff.

- The card and the detail page: no Cancel where the gateway cannot cancel (one query a response), the cancel's fate
  (Render.cancel_note), and plain words for a render waiting on an operator (Render.waiting_note), never the stored
  error's internals.
- The staff panel of the detail page and its actions (attach, not sent, not sent and send again, recheck), the
  alerts banner's Resolve, the reconciliation page's links, and the admin's "Attach to a gateway task…".
Everyone else gets what they get everywhere: anonymous the login page, who cannot see the render 404 (staff too),
who can see it but is not staff 403; every action is a POST with a CSRF token, and a second POST changes nothing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from studio.catalog import MODELS, SORA2, SORA2_PRO
from studio.lifecycle.sweep import sweep
from studio.models import (
    GatewayAlert,
    GatewayCapability,
    LedgerEntry,
    LedgerKind,
    Membership,
    Render,
    Role,
    State,
    Team,
)
from studio.money import ledger
from tests.conftest import HTMX, fresh

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = "A lighthouse in fog"
INTERNALS = ("ReadTimeout", "submit_unknown", "SubmitOutcomeUnknown", "error_code", "stalled)", "(lost)")


# --- the world ----------------------------------------------------------------------------------------------


@pytest.fixture
def crew(make_user):
    """Olivia (author) and Tom in team Crew; Sam is staff and in Crew; Stella is staff elsewhere; Oscar outside."""
    team = Team.objects.create(name="Crew", slug="crew")
    people = {
        "owner": make_user("olivia"),
        "teammate": make_user("tom"),
        "staff": make_user("sam", is_staff=True, is_superuser=True),
        "staff_outsider": make_user("stella", is_staff=True, is_superuser=True),
        "outsider": make_user("oscar"),
    }
    for person in ("owner", "teammate", "staff"):
        Membership.objects.create(team=team, user=people[person], role=Role.MEMBER)
    people["team"] = team
    return people


def client_for(user=None, **kwargs) -> Client:
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def make_render(owner, team=None, *, model: str = SORA2, held: bool = True, **fields) -> Render:
    """A render as the lifecycle leaves it, with its estimate held (as do_submit_render holds it)."""
    spec = MODELS[model]
    params = {"duration_seconds": 5, "size": "1280x720"} if model == SORA2 else {"duration_seconds": 5}
    with transaction.atomic():
        render = Render.objects.create(
            user=owner,
            team=team,
            model=model,
            prompt=PROMPT,
            params=params,
            estimated_cost=Decimal("0.5") if model == SORA2 else Decimal("1.85"),
            rate_per_second=Decimal("0.1") if model == SORA2 else Decimal("0.37"),
            **fields,
        )
        if held:
            ledger.hold(render)
    assert spec.key == model
    return render


def unknown(owner, team=None, **fields) -> Render:
    """Cut off while sending: the stored error names the exception, as the gateway client words it."""
    return make_render(
        owner,
        team,
        state=State.SUBMIT_UNKNOWN,
        error="The gateway did not answer the submission (ReadTimeout); it may have been accepted.",
        error_code="submit_unknown",
        finished_at=timezone.now(),
        **fields,
    )


def stalled(owner, team=None, code: str = "stalled", **fields) -> Render:
    return make_render(
        owner,
        team,
        state=State.STALLED,
        gateway_task_id=fields.pop("gateway_task_id", "task-stalled-1"),
        error="The gateway no longer knows task task-stalled-1 (5 polls answered 404)."
        if code == "lost"
        else "No result after 60 minutes at the gateway; an operator has been alerted. It may still be billed.",
        error_code=code,
        finished_at=timezone.now(),
        **fields,
    )


def text_of(html: str) -> str:
    """What a person reads: the HTML without its tags and attributes, whitespace folded."""
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def card_html(client: Client, render: Render) -> str:
    response = client.get(reverse("card", args=[render.pk]), **HTMX)
    assert response.status_code == 200
    return response.content.decode()


def detail_html(client: Client, render: Render) -> str:
    response = client.get(reverse("detail", args=[render.pk]))
    assert response.status_code == 200
    return response.content.decode()


def cannot_cancel(model: str = SORA2) -> None:
    """What the cancel step remembers after the gateway's cancel path answered 404 for this model's protocol."""
    GatewayCapability.objects.create(
        base_url=settings.BYTESPIKE_BASE_URL, protocol=str(MODELS[model].protocol), can_cancel=False
    )


def kinds(render: Render) -> list[str]:
    return list(LedgerEntry.objects.filter(render=render).order_by("pk").values_list("kind", flat=True))


# --- the card and the detail page: cancel ---------------------------------------------------------------------


def test_the_card_offers_no_cancel_the_gateway_cannot_do_and_says_so_for_that_models_cards_only(crew):
    cannot_cancel(SORA2)
    draft = make_render(crew["owner"], state=State.RUNNING, gateway_task_id="t-1", progress=20)
    pro = make_render(crew["owner"], model=SORA2_PRO, state=State.RUNNING, gateway_task_id="t-2")
    waiting = make_render(crew["owner"], state=State.PENDING)
    olivia = client_for(crew["owner"])

    html = card_html(olivia, draft)
    assert "This gateway cannot cancel renders: it runs to the end and is billed as usual." in text_of(html)
    assert 'class="cancel"' not in html
    assert 'class="cancel"' in card_html(olivia, pro)  # the other protocol's cancel is not known to fail
    assert "cannot cancel" not in card_html(olivia, pro)
    assert "Cancel (free)" in card_html(olivia, waiting)  # not sent yet: cancelled here, for free
    assert "This gateway cannot cancel" in text_of(detail_html(olivia, draft))
    assert "cannot cancel" not in detail_html(olivia, pro)


def test_the_studio_page_reads_the_gateways_capabilities_once_for_all_its_cards(crew):
    cannot_cancel(SORA2)
    for _ in range(3):
        make_render(crew["owner"], state=State.RUNNING, gateway_task_id="")
        make_render(crew["owner"], model=SORA2_PRO, state=State.QUEUED)
    olivia = client_for(crew["owner"])

    with CaptureQueriesContext(connection) as page:
        html = olivia.get(reverse("studio")).content.decode()
    # Every card changed since the page was drawn, which showed them all: the poll answers one partial per card.
    cursor = {
        "since": (timezone.now() - timedelta(minutes=5)).isoformat(),
        "floor": timezone.now().isoformat(),
    }
    Render.objects.update(updated_at=timezone.now())
    with CaptureQueriesContext(connection) as poll:
        answer = olivia.get(reverse("poll"), cursor, **HTMX).content.decode()

    assert html.count("This gateway cannot cancel") == 3 and html.count('class="cancel"') == 3
    assert capability_queries(page) == 1
    assert answer.count("This gateway cannot cancel") == 3
    assert answer.count('hx-swap-oob="true"') >= 6  # six cards in place, each its own partial
    assert capability_queries(poll) == 1


def test_a_page_of_finished_cards_does_not_ask_about_cancelling(crew):
    for _ in range(3):
        make_render(crew["owner"], state=State.COMPLETED, billed_cost=Decimal("0.5"))
    with CaptureQueriesContext(connection) as page:
        assert client_for(crew["owner"]).get(reverse("studio")).status_code == 200
    assert capability_queries(page) == 0


def capability_queries(captured) -> int:
    return sum("studio_gatewaycapability" in q["sql"] for q in captured.captured_queries)


def test_what_became_of_a_cancel_is_on_the_card_and_the_detail_page(crew):
    note = (
        "The gateway refused the cancel 3 times (last: busy), so it runs to the end and is billed as usual."
    )
    render = make_render(
        crew["owner"],
        state=State.RUNNING,
        gateway_task_id="t-1",
        cancel_requested_at=timezone.now(),
        cancel_attempts=3,
        cancel_note=note,
    )
    olivia = client_for(crew["owner"])

    card = text_of(card_html(olivia, render))
    assert note in card
    assert "Cancelling…" not in card  # the cancel is over: the render runs to its end
    assert note in text_of(detail_html(olivia, render))


def test_a_cancel_still_being_sent_says_so_without_a_note(crew):
    render = make_render(
        crew["owner"], state=State.RUNNING, gateway_task_id="t-1", cancel_requested_at=timezone.now()
    )
    card = card_html(client_for(crew["owner"]), render)
    assert "Cancelling…" in card and 'data-testid="cancel-note"' not in card


# --- the card and the detail page: renders waiting on an operator ----------------------------------------------


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (unknown, "cannot tell whether the gateway received it"),
        (stalled, "had not finished this render after 60 minutes"),
        (lambda owner: stalled(owner, code="lost"), "The gateway stopped reporting on this render"),
    ],
    ids=["submit_unknown", "stalled", "lost"],
)
def test_a_render_waiting_on_an_operator_says_what_happened_in_plain_words(crew, make, words):
    render = make(crew["owner"])
    olivia = client_for(crew["owner"])

    for html in (card_html(olivia, render), detail_html(olivia, render)):
        text = text_of(html)
        assert words in text
        assert "An operator has been told" in text
        assert not [name for name in INTERNALS if name in text], text
        assert render.error not in text  # the stored error is for operators
        assert 'data-testid="staff-panel"' not in html
    assert "Operator actions" not in card_html(olivia, render)


def test_other_renders_have_no_waiting_note(crew):
    for state in (State.RUNNING, State.COMPLETED, State.FAILED):
        assert make_render(crew["owner"], state=state).waiting_note == ""


def test_a_failed_render_still_shows_its_error(crew):
    render = make_render(crew["owner"], state=State.FAILED, error="The prompt was too long.", error_code="x")
    text = text_of(card_html(client_for(crew["owner"]), render))
    assert "The prompt was too long." in text


# --- the staff panel ------------------------------------------------------------------------------------------


def test_staff_see_the_actions_that_apply_and_a_link_to_the_admin(crew):
    team = crew["team"]
    cases = {
        "unsent": (unknown(crew["owner"], team), {"attach", "not-sent", "not-sent-resubmit"}),
        "unknown_with_task": (unknown(crew["owner"], team, gateway_task_id="t-9"), {"attach", "recheck"}),
        "stalled": (stalled(crew["owner"], team), {"recheck"}),
        "completed": (make_render(crew["owner"], team, state=State.COMPLETED), set()),
    }
    sam = client_for(crew["staff"])
    for name, (render, actions) in cases.items():
        html = detail_html(sam, render)
        assert 'id="staff-panel"' in html, name
        shown = set(re.findall(r'data-testid="(attach|not-sent|not-sent-resubmit|recheck)"', html))
        assert shown == actions, name
        assert reverse("admin:studio_render_change", args=[render.pk]) in html
        if not actions:
            assert "No operator action applies to a completed render." in text_of(html)
    tom = client_for(crew["teammate"])
    assert 'id="staff-panel"' not in detail_html(tom, cases["unsent"][0])
    assert "/admin/" not in detail_html(tom, cases["unsent"][0])


def test_staff_get_a_link_from_a_waiting_card_to_its_actions(crew):
    render = unknown(crew["staff"])
    html = card_html(client_for(crew["staff"]), render)
    assert f'href="{reverse("detail", args=[render.pk])}#staff-panel"' in html


ROUTES = ["operator_attach", "operator_not_sent", "operator_recheck"]
PAYLOAD = {"task_id": "task-x", "resubmit": "0"}


@pytest.mark.parametrize("name", ROUTES)
def test_each_action_answers_each_person_as_the_access_rules_say(crew, name):
    render = unknown(crew["owner"], crew["team"])
    private = unknown(crew["owner"], crew["team"], private=True)
    url = reverse(name, args=[render.pk])
    expected = {"owner": 403, "teammate": 403, "outsider": 404, "staff_outsider": 404}
    for person, status in expected.items():
        assert client_for(crew[person]).post(url, PAYLOAD).status_code == status, person
    assert fresh(render).state == State.SUBMIT_UNKNOWN
    # someone else's private render is the author's alone, for staff too
    assert client_for(crew["staff"]).post(reverse(name, args=[private.pk]), PAYLOAD).status_code == 404
    anonymous = Client().post(url, PAYLOAD)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/?next=")
    assert client_for(crew["staff"]).get(url).status_code == 405
    assert fresh(render).state == State.SUBMIT_UNKNOWN


@pytest.mark.parametrize("name", ROUTES)
def test_each_action_needs_the_csrf_token(crew, name):
    render = unknown(crew["owner"], crew["team"])
    sam = client_for(crew["staff"], enforce_csrf_checks=True)
    response = sam.post(reverse(name, args=[render.pk]), PAYLOAD, **HTMX)
    assert response.status_code == 403
    assert "security token" in response.content.decode()
    assert fresh(render).state == State.SUBMIT_UNKNOWN


def test_attach_from_the_panel_polls_the_task_and_a_second_post_changes_nothing(crew, queue):
    render = unknown(crew["owner"], crew["team"])
    alert = GatewayAlert.raise_alert(GatewayAlert.Kind.SUBMIT_UNKNOWN, "cut off", render=render)
    sam = client_for(crew["staff"])
    url = reverse("operator_attach", args=[render.pk])

    first = sam.post(url, {"task_id": " task-42 "}, **HTMX).content.decode()
    after = fresh(render)
    second = sam.post(url, {"task_id": "task-43"}, **HTMX).content.decode()

    assert (after.state, after.gateway_task_id) == (State.QUEUED, "task-42")
    assert 'class="toast success"' in first and "Attached to gateway task task-42" in first
    assert 'id="staff-panel"' in first and 'id="status"' in first and 'hx-swap-oob="true"' in first
    assert 'data-testid="attach"' not in first  # it is polled now: nothing left to do
    assert fresh(alert).resolved_at is not None
    assert f'<div id="alert-{alert.pk}" hx-swap-oob="delete">' in first  # its banner leaves the page
    assert 'hx-swap-oob="delete"' not in second
    assert "run_poller" in queue.names()
    assert 'class="toast warning"' in second and "Only a render whose submission outcome is unknown" in second
    assert fresh(render).gateway_task_id == "task-42"
    assert kinds(render) == [LedgerKind.HOLD]  # nothing settled yet: the gateway still has it


def test_attach_without_a_task_id_changes_nothing(crew):
    render = unknown(crew["owner"], crew["team"])
    answer = client_for(crew["staff"]).post(reverse("operator_attach", args=[render.pk]), {}, **HTMX)
    assert "Give the gateway's task id." in text_of(answer.content.decode())
    assert fresh(render).state == State.SUBMIT_UNKNOWN


def test_not_sent_releases_the_hold_once(crew):
    render = unknown(crew["owner"], crew["team"])
    sam = client_for(crew["staff"])
    url = reverse("operator_not_sent", args=[render.pk])

    first = sam.post(url, {"resubmit": "0"}, **HTMX).content.decode()
    second = sam.post(url, {"resubmit": "0"}, **HTMX).content.decode()

    assert "Marked as never sent: its hold is released." in first
    assert fresh(render).state == State.FAILED
    assert "can be marked" in second
    assert kinds(render) == [LedgerKind.HOLD, LedgerKind.RELEASE]
    assert "nothing was billed" in text_of(card_html(client_for(crew["owner"]), render))


def test_not_sent_and_send_again_queues_one_new_attempt(crew, queue):
    render = unknown(crew["owner"], crew["team"])
    sam = client_for(crew["staff"])
    url = reverse("operator_not_sent", args=[render.pk])

    sam.post(url, {"resubmit": "1"}, **HTMX)
    sam.post(url, {"resubmit": "1"}, **HTMX)

    assert fresh(render).state == State.PENDING
    assert queue.names().count("submit_render") == 1
    assert kinds(render) == [LedgerKind.HOLD]  # the same hold carries the new attempt


def test_not_sent_must_say_whether_to_send_again(crew):
    render = unknown(crew["owner"], crew["team"])
    response = client_for(crew["staff"]).post(reverse("operator_not_sent", args=[render.pk]), {}, **HTMX)
    assert response.status_code == 400 and "resubmit" in response.content.decode()
    assert fresh(render).state == State.SUBMIT_UNKNOWN


def test_a_plain_form_post_goes_back_to_the_panel_with_the_message(crew):
    render = unknown(crew["owner"], crew["team"])
    sam = client_for(crew["staff"])
    response = sam.post(reverse("operator_not_sent", args=[render.pk]), {"resubmit": "0"})
    assert response.status_code == 302
    assert response["Location"] == reverse("detail", args=[render.pk]) + "#staff-panel"
    page = sam.get(response["Location"]).content.decode()
    assert "Marked as never sent" in page


def test_recheck_from_the_panel_resumes_a_stalled_render_the_gateway_still_has(crew, gateway, queue):
    from studio.actions.renders import do_submit_render
    from studio.forms import RenderForm

    form = RenderForm({"model": SORA2, "prompt": PROMPT, "duration_seconds": 5})
    assert form.is_valid()
    render = do_submit_render(crew["owner"], form.order())
    queue.run()
    Render.objects.filter(pk=render.pk).update(
        state=State.STALLED, finished_at=timezone.now(), next_poll_at=None
    )
    sam = client_for(crew["staff"])
    url = reverse("operator_recheck", args=[render.pk])

    first = sam.post(url, **HTMX).content.decode()
    state = fresh(render).state
    second = sam.post(url, **HTMX).content.decode()

    assert "The gateway says" in first
    assert state not in (State.STALLED, State.SUBMIT_UNKNOWN)
    assert "Only a stalled render" in second
    assert fresh(render).state not in (State.STALLED, State.SUBMIT_UNKNOWN)


def test_a_recheck_the_gateway_cannot_answer_changes_nothing_and_says_why(crew, gateway):
    render = stalled(crew["owner"], crew["team"], gateway_task_id="no-such-task")
    answer = client_for(crew["staff"]).post(reverse("operator_recheck", args=[render.pk]), **HTMX)
    assert "The gateway did not answer for task no-such-task" in answer.content.decode()
    assert fresh(render).state == State.STALLED


# --- the alerts banner --------------------------------------------------------------------------------------


def test_staff_resolve_an_alert_from_the_banner_on_any_page(crew):
    alert = GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, "The wallet is empty.")
    sam = client_for(crew["staff"])
    page = sam.get(reverse("gallery")).content.decode()
    assert f'id="alert-{alert.pk}"' in page
    assert reverse("alert_resolve", args=[alert.pk]) in page
    url = reverse("alert_resolve", args=[alert.pk])

    first = sam.post(url, **HTMX)
    second = sam.post(url, **HTMX)

    assert first.status_code == 200
    assert 'class="toast success"' in first.content.decode() and "Resolved." in first.content.decode()
    assert "banner" not in first.content.decode()  # what replaces the banner: nothing
    assert fresh(alert).resolved_at is not None
    assert "It was already resolved." in second.content.decode()
    assert f'id="alert-{alert.pk}"' not in sam.get(reverse("gallery")).content.decode()


def test_resolving_the_credentials_alert_from_the_banner_sends_the_waiting_renders(crew, queue):
    GatewayAlert.raise_alert(GatewayAlert.Kind.CREDENTIALS, "401", pause_seconds=300)
    alert = GatewayAlert.objects.get(kind=GatewayAlert.Kind.CREDENTIALS)
    make_render(
        crew["owner"],
        state=State.PENDING,
        error_code="credentials",
        next_attempt_at=timezone.now() + timedelta(minutes=5),
    )
    answer = client_for(crew["staff"]).post(reverse("alert_resolve", args=[alert.pk]), **HTMX)
    assert "1 waiting render(s) sent now" in answer.content.decode()
    assert fresh(alert).resolved_at is not None


def test_a_plain_resolve_goes_back_to_the_page_it_came_from(crew):
    alert = GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, "The wallet is empty.")
    url = reverse("alert_resolve", args=[alert.pk])
    sam = client_for(crew["staff"])
    assert sam.post(url, {"next": "/gallery/"})["Location"] == "/gallery/"
    assert sam.post(url, {"next": "https://elsewhere.example/"})["Location"] == reverse("studio")


def test_only_staff_resolve_alerts(crew):
    alert = GatewayAlert.raise_alert(GatewayAlert.Kind.WALLET, "The wallet is empty.")
    url = reverse("alert_resolve", args=[alert.pk])
    for person in ("owner", "outsider"):
        assert client_for(crew[person]).post(url).status_code == 403
        assert "alert-" not in client_for(crew[person]).get(reverse("studio")).content.decode()
    assert Client().post(url)["Location"].startswith("/login/?next=")
    assert client_for(crew["staff"]).get(url).status_code == 405
    assert client_for(crew["staff"]).post(reverse("alert_resolve", args=[alert.pk + 1000])).status_code == 404
    sam = client_for(crew["staff"], enforce_csrf_checks=True)
    assert sam.post(url, **HTMX).status_code == 403
    assert fresh(alert).resolved_at is None


def test_the_banner_lists_five_alerts_and_links_to_the_rest(crew):
    for n in range(7):
        make_render(crew["owner"], state=State.STALLED)
        GatewayAlert.raise_alert(GatewayAlert.Kind.STALLED, f"stalled {n}", render=Render.objects.first())
    page = client_for(crew["staff"]).get(reverse("studio")).content.decode()
    assert page.count('data-testid="alert"') == 5
    assert 'data-testid="more-alerts"' in page
    assert reverse("admin:studio_gatewayalert_changelist") in page


# --- the reconciliation page -----------------------------------------------------------------------------------


def test_reconciliation_links_each_stuck_render_to_its_actions(crew):
    team = crew["team"]
    for person in ("owner", "staff"):
        Membership.objects.filter(team=team, user=crew[person]).update(role=Role.ADMIN)
    unsent, lost = unknown(crew["owner"], team), stalled(crew["owner"], team)
    url = reverse("reconcile") + f"?team={team.pk}"

    staff_page = client_for(crew["staff"]).get(url).content.decode()
    owner_page = client_for(crew["owner"]).get(url).content.decode()

    for render in (unsent, lost):
        anchor = f'href="{reverse("detail", args=[render.pk])}#staff-panel"'
        assert anchor in staff_page and anchor in owner_page
        assert reverse("admin:studio_render_change", args=[render.pk]) in staff_page
        assert reverse("admin:studio_render_change", args=[render.pk]) not in owner_page
    staff_text = text_of(staff_page)
    assert "attach it to that task" in staff_text and "mark it not sent" in staff_text
    assert "Recheck it at the gateway" in staff_text
    assert "manage.py renders attach" in staff_text


# --- the admin -------------------------------------------------------------------------------------------------


def test_the_admin_asks_for_the_task_id_then_attaches(crew):
    render = unknown(crew["owner"], crew["team"])
    sam = client_for(crew["staff"])
    changelist = reverse("admin:studio_render_changelist")
    chosen = {"action": "attach", ACTION_CHECKBOX_NAME: [str(render.pk)], "index": "0"}

    form = sam.post(changelist, chosen)
    assert form.status_code == 200
    assert 'name="task_id"' in form.content.decode() and PROMPT in form.content.decode()
    assert fresh(render).state == State.SUBMIT_UNKNOWN

    applied = {
        "action": "attach",
        ACTION_CHECKBOX_NAME: [str(render.pk)],
        "apply": "Attach",
        "task_id": "t-77",
    }
    done = sam.post(changelist, applied, follow=True)
    assert "Attached to gateway task t-77" in done.content.decode()
    assert (fresh(render).state, fresh(render).gateway_task_id) == (State.QUEUED, "t-77")

    again = sam.post(changelist, applied, follow=True)
    assert "Only a render whose submission outcome is unknown" in again.content.decode()


def test_the_admin_attaches_one_render_at_a_time(crew):
    first, second = unknown(crew["owner"]), unknown(crew["owner"])
    sam = client_for(crew["staff"])
    chosen = {"action": "attach", ACTION_CHECKBOX_NAME: [str(first.pk), str(second.pk)], "index": "0"}
    answer = sam.post(reverse("admin:studio_render_changelist"), chosen, follow=True)
    assert "Attach one render at a time" in answer.content.decode()


def test_a_stranded_submission_swept_to_unknown_shows_the_plain_words(crew, queue):
    render = make_render(crew["owner"], state=State.SUBMITTING)
    long_ago = timezone.now() - timedelta(seconds=settings.GATEWAY_TIMEOUT["read"] + 61)
    Render.objects.filter(pk=render.pk).update(updated_at=long_ago)
    sweep()
    text = text_of(card_html(client_for(crew["owner"]), render))
    assert "An operator has been told" in text
    assert "The studio stopped while submitting" not in text


def test_a_finished_clip_whose_file_is_lost_says_so_and_offers_no_player(crew):
    render = make_render(
        crew["owner"],
        crew["team"],
        state=State.COMPLETED,
        video="renders/gone/clip.mp4",
        finished_at=timezone.now(),
        file_lost_at=timezone.now(),
    )
    owner = client_for(crew["owner"])

    card, detail = card_html(owner, render), detail_html(owner, render)

    for html in (card, detail):
        assert "The clip's file is gone" in text_of(html)
        assert "<video" not in html
    Render.objects.filter(pk=render.pk).update(file_lost_at=None)
    assert "<video" in card_html(owner, render)  # the same card plays a clip that is there
