"""The gateway's two models, their parameters and limits, as data: the one place that knows them.

Sources: shared/seeds/000 (sora2, "OpenAI Video" protocol) and 001 (sora-2-pro, tasks API).

Pages take every model fact from here too (labels, the form's hints, limits): templates never spell one out.
Prices are not here: they come from the live rate card (studio.money, studio.pricing) when a page is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Protocol(StrEnum):
    OPENAI_VIDEO = "openai_video"
    TASKS = "tasks"


SORA2 = "sora2"
SORA2_PRO = "sora-2-pro"

MAX_PROMPT_CHARS = 4000
SEED_MAX = 2**32 - 1  # a model that takes a seed takes 0 to 2^32 - 1
# Frames per second of the clips: the gateway's pages do not say; the emulator renders 24. The viewer steps one
# frame of this; "Save this frame" reads the real rate from the file.
FRAME_RATE = 24
MAX_VARIANTS = (
    4  # "Render ×N": at most this many takes of one prompt at once (the studio's limit, not the gateway's)
)

# Sora 2 Pro: resolution x aspect ratio -> frame size. 1080p 16:9 is 1920x1080 as usual; the page is silent on
# the others, so portrait swaps the sides and square uses the short side (README "Assumptions").
PRO_FRAME_SIZES: dict[tuple[str, str], tuple[int, int]] = {
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "1:1"): (1080, 1080),
    ("720p", "16:9"): (1280, 720),
    ("720p", "9:16"): (720, 1280),
    ("720p", "1:1"): (720, 720),
}


@dataclass(frozen=True)
class ModelSpec:
    """What one model accepts. Parameters a model lacks are None or empty and hidden in the form."""

    key: str
    label: str
    tier: str  # "draft" or "pro": a draft is promoted to the pro model
    protocol: Protocol
    durations: tuple[int, ...]  # allowed whole seconds
    default_duration: int
    sizes: tuple[str, ...] = ()  # "WxH", sora2
    default_size: str | None = None
    resolutions: tuple[str, ...] = ()  # sora-2-pro
    default_resolution: str | None = None
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = None
    style_presets: tuple[str, ...] = ()
    supports_seed: bool = False
    image_field: str = ""  # the body field carrying the init image
    short_label: str = ""  # badges and one-line summaries: "Sora 2"
    pitch: str = ""  # what the form's hint calls the model: "Cheap drafts"

    @property
    def min_duration(self) -> int:
        return min(self.durations)

    @property
    def max_duration(self) -> int:
        return max(self.durations)

    @property
    def duration_is_range(self) -> bool:
        return self.durations == tuple(range(self.min_duration, self.max_duration + 1))

    @property
    def durations_text(self) -> str:
        """The allowed durations as the form's hint says them: "5, 10 or 15 s", "1–20 s"."""
        if self.duration_is_range:
            return f"{self.min_duration}–{self.max_duration} s"
        return f"{_either(map(str, self.durations))} s"

    def hint(self, rate: str) -> str:
        """The line under the form's model choice. `rate` is the rate card's price as people read it ("$0.10 per
        second"), shown for a model priced at one rate; a model priced per resolution names its resolutions."""
        if self.resolutions:
            return (
                f"{self.pitch}: {self.durations_text} at {_either(self.resolutions)}, live per-second rate."
            )
        return f"{self.pitch}: {rate}, {self.durations_text}."

    def frame_size(self, params: dict) -> tuple[int, int]:
        """Width and height of the clip these parameters ask for."""
        if self.sizes:
            width, height = (params.get("size") or self.default_size or "0x0").split("x")
            return int(width), int(height)
        key = (
            params.get("resolution") or self.default_resolution or "",
            params.get("aspect_ratio") or self.default_aspect_ratio or "",
        )
        return PRO_FRAME_SIZES[key]

    def rate_key(self, params: dict) -> str:
        """The rate-card column these parameters are priced at."""
        if self.resolutions:
            return params.get("resolution") or self.default_resolution or ""
        return "any"


MODELS: dict[str, ModelSpec] = {
    SORA2: ModelSpec(
        key=SORA2,
        label="Sora 2 (draft)",
        tier="draft",
        protocol=Protocol.OPENAI_VIDEO,
        durations=(5, 10, 15),
        default_duration=5,
        sizes=("1280x720", "1920x1080"),
        default_size="1280x720",
        image_field="source_image",
        short_label="Sora 2",
        pitch="Cheap drafts",
    ),
    SORA2_PRO: ModelSpec(
        key=SORA2_PRO,
        label="Sora 2 Pro",
        tier="pro",
        protocol=Protocol.TASKS,
        durations=tuple(range(1, 21)),
        default_duration=8,
        resolutions=("720p", "1080p"),
        default_resolution="1080p",
        aspect_ratios=("16:9", "9:16", "1:1"),
        default_aspect_ratio="16:9",
        style_presets=("none", "cinematic", "anime", "documentary"),
        supports_seed=True,
        image_field="image_init",
        short_label="Sora 2 Pro",
        pitch="The keeper",
    ),
}

MODEL_CHOICES = [(spec.key, spec.label) for spec in MODELS.values()]


def get_model(key: str) -> ModelSpec:
    """The spec of a model key; KeyError for an unknown model."""
    return MODELS[key]


def for_tier(tier: str) -> ModelSpec:
    """The model of a tier ("draft" or "pro"); StopIteration for an unknown tier."""
    return next(spec for spec in MODELS.values() if spec.tier == tier)


def _either(items) -> str:
    """Items as a sentence offers them: "a", "a or b", "a, b or c"."""
    items = list(items)
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else "".join(items)
