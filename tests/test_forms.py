"""The render form: each model's limits, the prompt rules, init images and tampered input."""

from __future__ import annotations

import io
import re
import struct
import uuid
import zlib
from decimal import Decimal

import pytest
from conftest import HTMX
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from studio.actions.renders import do_submit_render
from studio.forms import RenderForm
from studio.models import Render

PROMPT = "A red apple rolls slowly across a wooden table"


def sora2(**fields) -> dict:
    return {"model": "sora2", "prompt": PROMPT, "duration_seconds": "5", **fields}


def pro(**fields) -> dict:
    return {"model": "sora-2-pro", "prompt": PROMPT, "duration_seconds": "8", **fields}


def bound(data: dict, files: dict | None = None) -> RenderForm:
    form = RenderForm(data, files or {})
    form.is_valid()
    return form


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), **save) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise(size, 40).convert("RGB").save(buf, fmt, **save)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header (with a correct CRC) claims width x height pixels."""
    data = bytearray(image_bytes("PNG", (1, 1)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def upload(name: str, content: bytes, content_type: str = "image/png") -> dict:
    return {"init_image": SimpleUploadedFile(name, content, content_type=content_type)}


# --- sora2 ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", ["5", "10", "15"])
@pytest.mark.parametrize("size", ["1280x720", "1920x1080"])
def test_sora2_accepts_its_durations_and_sizes(seconds, size):
    form = bound(sora2(duration_seconds=seconds, size=size))
    assert form.errors == {}
    assert form.params == {"duration_seconds": int(seconds), "size": size}


def test_sora2_defaults_to_1280x720():
    assert bound(sora2()).params == {"duration_seconds": 5, "size": "1280x720"}


@pytest.mark.parametrize("seconds", ["7", "20", "0", "-5"])
def test_sora2_rejects_durations_it_does_not_render(seconds):
    form = bound(sora2(duration_seconds=seconds))
    assert list(form.errors) == ["duration_seconds"]
    assert form.errors["duration_seconds"] == ["Sora 2 (draft) renders 5, 10 or 15 seconds."]


@pytest.mark.parametrize("size", ["1080x1920", "720x720", "1080p"])
def test_sora2_rejects_a_pro_frame_size(size):
    form = bound(sora2(size=size))
    assert list(form.errors) == ["size"]


def test_sora2_requires_a_duration():
    form = bound(sora2(duration_seconds=""))
    assert form.errors == {"duration_seconds": ["Choose a duration."]}


def test_sora2_drops_the_pro_fields_from_params():
    form = bound(sora2(resolution="720p", aspect_ratio="9:16", seed="7", style_preset="anime"))
    assert form.errors == {}
    assert form.params == {"duration_seconds": 5, "size": "1280x720"}


# --- sora-2-pro -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds", range(1, 21))
def test_pro_accepts_every_whole_second_from_1_to_20(seconds):
    form = bound(pro(duration_seconds=str(seconds)))
    assert form.errors == {}
    assert form.params["duration_seconds"] == seconds


@pytest.mark.parametrize("resolution", ["720p", "1080p"])
@pytest.mark.parametrize("aspect", ["16:9", "9:16", "1:1"])
def test_pro_accepts_its_resolutions_and_aspect_ratios(resolution, aspect):
    form = bound(pro(resolution=resolution, aspect_ratio=aspect))
    assert form.errors == {}
    assert form.params == {"duration_seconds": 8, "resolution": resolution, "aspect_ratio": aspect}


@pytest.mark.parametrize("seed", [0, 7, 2**32 - 1])
def test_pro_accepts_seeds_from_0_to_2_pow_32_minus_1(seed):
    form = bound(pro(seed=str(seed)))
    assert form.errors == {}
    assert form.params["seed"] == seed


@pytest.mark.parametrize("style", ["none", "cinematic", "anime", "documentary"])
def test_pro_accepts_its_style_presets(style):
    form = bound(pro(style_preset=style))
    assert form.errors == {}
    assert form.params["style_preset"] == style


def test_pro_defaults_to_1080p_16_9_without_seed_or_style():
    assert bound(pro()).params == {"duration_seconds": 8, "resolution": "1080p", "aspect_ratio": "16:9"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("duration_seconds", "0"),
        ("duration_seconds", "21"),
        ("duration_seconds", "2.5"),
        ("resolution", "4k"),
        ("resolution", "1920x1080"),
        ("aspect_ratio", "4:3"),
        ("seed", "-1"),
        ("seed", str(2**32)),
        ("style_preset", "vaporwave"),
    ],
)
def test_pro_rejects_values_outside_its_limits_on_that_field(field, value):
    form = bound(pro(**{field: value}))
    assert list(form.errors) == [field]


def test_pro_duration_message_states_the_range():
    assert bound(pro(duration_seconds="21")).errors["duration_seconds"] == [
        "Sora 2 Pro renders 1 to 20 seconds."
    ]


def test_pro_drops_the_sora2_size_from_params():
    form = bound(pro(size="1920x1080"))
    assert form.errors == {}
    assert "size" not in form.params


@pytest.mark.parametrize(
    ("data", "total"),
    [
        (sora2(duration_seconds="10"), Decimal("1.0000")),
        (pro(), Decimal("1.8500")),
        (pro(duration_seconds="10", resolution="720p"), Decimal("1.3875")),
    ],
)
def test_estimate_prices_what_the_form_holds(data, total, db):  # the rate card is in the database
    assert bound(data).estimate().total == total


def test_no_estimate_while_the_duration_is_wrong(db):
    assert bound(sora2(duration_seconds="7")).estimate() is None


# --- the prompt -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t \r\n"])
def test_empty_prompt_is_an_error(prompt):
    assert list(bound(sora2(prompt=prompt)).errors) == ["prompt"]


def test_prompt_of_4000_characters_is_accepted_and_4001_is_not():
    assert bound(sora2(prompt="a" * 4000)).errors == {}
    assert list(bound(sora2(prompt="a" * 4001)).errors) == ["prompt"]


def test_browser_line_breaks_count_as_one_character_as_the_textarea_counts_them():
    # A browser counts "\n" as one character against maxlength=4000 but submits "\r\n".
    typed = ("a" * 99 + "\n") * 39 + "a" * 100
    assert len(typed) == 4000
    form = bound(sora2(prompt=typed.replace("\n", "\r\n")))
    assert form.errors == {}
    assert form.cleaned_data["prompt"] == typed


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x07", "\x7f", "\r", "\x9b"])
def test_control_characters_in_the_prompt_are_an_error(char):
    form = bound(sora2(prompt=f"A red{char} apple"))
    assert list(form.errors) == ["prompt"]


def test_escape_sequence_error_names_the_character():
    assert bound(sora2(prompt="red \x1b[31m apple")).errors["prompt"] == [
        "The prompt contains control characters (e.g. U+001B); remove them."
    ]


def test_newlines_and_tabs_are_kept_and_the_ends_trimmed():
    form = bound(sora2(prompt="  A red apple\n\trolls\r\nslowly  \n"))
    assert form.errors == {}
    assert form.cleaned_data["prompt"] == "A red apple\n\trolls\nslowly"


# --- init images ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg"), ("WEBP", "webp")])
def test_png_jpeg_and_webp_are_stored_as_init_with_their_real_type(db, owner, media, fmt, ext):
    form = bound(sora2(), upload("holiday.bin", image_bytes(fmt), "application/octet-stream"))
    assert form.errors == {}
    render = do_submit_render(owner, form.order())
    assert render.init_image.name == f"renders/{render.pk}/init.{ext}"
    assert (media / render.init_image.name).read_bytes()[:4] == image_bytes(fmt)[:4]


def test_hostile_filename_is_stored_under_a_safe_name(db, owner, media):
    form = bound(sora2(), upload("../../etc/passwd.png", image_bytes("PNG")))
    assert form.errors == {}
    render = do_submit_render(owner, form.order())
    assert render.init_image.name == f"renders/{render.pk}/init.png"
    assert [p.name for p in (media / "renders" / str(render.pk)).iterdir()] == ["init.png"]


def test_hostile_filename_in_the_multipart_body_is_stored_under_a_safe_name(owner_client, owner, media):
    boundary = "BoUnDaRy"
    parts = [(name, value) for name, value in sora2().items()]
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in parts
    )
    body += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="init_image"; filename="../../etc/passwd.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body += image_bytes("PNG") + f"\r\n--{boundary}--\r\n".encode()
    response = owner_client.post(
        "/renders/", body, content_type=f"multipart/form-data; boundary={boundary}", **HTMX
    )
    assert response.status_code == 200
    render = Render.objects.get(user=owner)
    assert render.init_image.name == f"renders/{render.pk}/init.png"
    assert not (media / "etc").exists() and not (media.parent / "etc").exists()


def test_a_jpeg_named_png_is_stored_as_jpg(db, owner, media):
    form = bound(sora2(), upload("photo.png", image_bytes("JPEG")))
    render = do_submit_render(owner, form.order())
    assert render.init_image.name == f"renders/{render.pk}/init.jpg"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("vector.svg", SVG, "SVG"),
        ("vector.png", SVG, "SVG"),
        ("scan.tiff", image_bytes("TIFF"), "TIFF"),
        ("anim.gif", image_bytes("GIF"), "GIF"),
        ("half.png", image_bytes("PNG")[:200], "truncated or corrupt"),
        ("bomb.png", png_claiming_size(20_000, 20_000), "megapixels"),
        ("empty.png", b"", ""),
    ],
)
def test_unusable_init_images_are_rejected_on_the_image_field(db, name, content, says):
    form = bound(sora2(), upload(name, content))
    assert list(form.errors) == ["init_image"]
    assert says in " ".join(form.errors["init_image"])
    assert Render.objects.count() == 0


def test_oversized_init_image_is_rejected(settings):
    settings.STUDIO_MAX_IMAGE_BYTES = 4096
    form = bound(sora2(), upload("big.png", image_bytes("PNG", (128, 128))))
    assert list(form.errors) == ["init_image"]
    assert "the limit is" in form.errors["init_image"][0]


# --- tampered input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model", "gpt"),
        ("model", ""),
        ("duration_seconds", "abc"),
        ("duration_seconds", "1e3"),
        ("seed", "NaN"),
        ("size", "<script>"),
        ("client_token", "not-a-uuid"),
    ],
)
def test_tampered_fields_are_field_errors(field, value):
    assert field in bound(sora2(**{field: value})).errors


@pytest.mark.parametrize(
    "tampered",
    [
        {"model": "gpt"},
        {"duration_seconds": "abc"},
        {"seed": "99999999999999999999999"},
        {"client_token": "x"},
        {"model": ["sora2", "gpt"]},
    ],
)
def test_tampered_submissions_never_500(owner_client, tampered):
    page = owner_client.post("/renders/", sora2(**tampered))
    fragment = owner_client.post("/renders/", sora2(**tampered), **HTMX)
    estimate = owner_client.post("/estimate/", sora2(**tampered), **HTMX)
    assert (page.status_code, fragment.status_code, estimate.status_code) == (400, 200, 200)
    assert fragment["HX-Retarget"] == "#studio-form"
    assert Render.objects.count() == 0


def test_a_submitted_form_keeps_its_client_token():
    token = uuid.uuid4()
    assert bound(sora2(client_token=str(token))).cleaned_data["client_token"] == token


def test_model_error_is_shown_next_to_the_model():
    form = bound(sora2(model="gpt"))
    assert re.search("valid choice", form.errors["model"][0])
