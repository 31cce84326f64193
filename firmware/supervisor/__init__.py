"""The RP2040 I/O supervisor's MicroPython firmware (framing and messages shared with the unit)."""
