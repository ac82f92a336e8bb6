"""The bytespike gateway emulator: both documented protocols over real HTTP, producing real H.264 MP4s.

Standard library, imageio-ffmpeg and Pillow only: nothing here imports Django or the studio's gateway client
(studio/gateway/), which knows the emulator only over HTTP. Imports point one way, down this list:

- http.py      `Emulator` (bind, serve, stop; helpers for tests) and the request handler: routes, credentials,
               acting out injected faults, streaming the clip
- controls.py  the test controls under /_emulator/ (health, faults, expire-results, a task's record)
- faults.py    the fault queue tests fill and requests consume
- state.py     `EmulatorConfig` and the task store: clock, timings, billing, cancel, signed result URLs,
               tasks.json and its journal, the render pool
- protocol.py  the two protocols: constants, request validation, answer shapes, `ApiError` and the error shape
- video.py     the clip: an MP4 made by ffmpeg with the prompt drawn on it (DejaVuSans.ttf + licence)
"""

from .http import Emulator
from .state import EmulatorConfig

__all__ = ["Emulator", "EmulatorConfig"]
