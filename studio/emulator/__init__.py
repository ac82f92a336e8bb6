"""The bytespike gateway emulator: both documented protocols over real HTTP, producing real H.264 MP4s."""

from .server import Emulator, EmulatorConfig

__all__ = ["Emulator", "EmulatorConfig"]
