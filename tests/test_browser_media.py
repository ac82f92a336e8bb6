"""Shared media in Debian's Chromium: the detail page plays and seeks a clip kept on the local disk or in a real
S3-compatible store (the player follows the studio's redirect to a pre-signed link, which the
Content-Security-Policy allows)."""

from __future__ import annotations

import pytest

from studio import storage
from tests.conftest import wait_for
from tests.test_shared_media import with_files

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_detail_page_plays_and_seeks_the_clip(
    request, where, media, owner, logged_in, live_server, tmp_path
):
    if where == "s3":
        request.getfixturevalue("s3")
    assert storage.is_local() == (where == "local")
    page = logged_in
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: blocked.append(message.text) if "Content Security" in message.text else None,
    )
    render = with_files(owner, tmp_path, seconds=6)

    page.goto(f"{live_server.url}/renders/{render.pk}/detail/")
    video = page.locator("#player")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for(lambda: video.evaluate("v => v.currentTime") > 0.2, timeout=20)
    assert video.evaluate("v => v.duration") == pytest.approx(6, abs=0.5)

    video.evaluate("v => { v.pause(); v.currentTime = 4; }")  # a seek asks for a byte range
    wait_for(lambda: abs(video.evaluate("v => v.currentTime") - 4) < 0.5, timeout=20)
    assert video.evaluate("v => v.error") is None
    assert blocked == []
