"""The supervisor's wiring and timings. Edit for a different board before flashing.

The unit may lower the heartbeat timeout and the outputs' maximum on-times by its CONFIG message,
always within the hard limits here, which only reflashing changes.
"""


class Settings:
    """Pins (GPIO numbers) and times (ms); keyword arguments override the defaults."""

    # UART0 to the unit (Pico pins 1 and 2); 3.3 V logic, cross TX/RX with the Pi's UART.
    uart_id = 0
    uart_tx = 0
    uart_rx = 1
    baudrate = 115200
    # Deterrent outputs (relay driver inputs), channel 0 first.
    output_pins = (2, 3, 4, 5)
    outputs_active_high = True
    # The relay that cuts the unit's power (wired through its normally-closed contact).
    power_pin = 15
    power_active_high = True
    # Tamper/door switch to ground: closed (low) is shut, open (pulled high) is tamper.
    tamper_pin = 16
    tamper_debounce_ms = 50
    # Supply voltage through a divider to ADC0; mV at the supply per mV at the pin.
    supply_adc_pin = 26
    supply_divider = 11.0
    adc_reference_mv = 3300
    led_pin = 25
    # Heartbeats: the unit's CONFIG may choose a timeout between these.
    heartbeat_timeout_ms = 15000
    min_heartbeat_timeout_ms = 1000
    max_heartbeat_timeout_ms = 600000
    # Power cycling: cut for power_off_ms, then wait boot_grace_ms (doubled each further attempt,
    # at most max_wait_ms) for a heartbeat; after max_attempts cycles give up.
    power_off_ms = 5000
    boot_grace_ms = 120000
    max_wait_ms = 1800000
    max_attempts = 5
    stable_ms = 600000  # heartbeats this long after a power cycle reset the attempt count
    # Maximum on-time of every output: the default, and the most a CONFIG may ask for.
    default_max_on_s = 300
    hard_max_on_s = 900
    wdt_timeout_ms = 4000
    loop_ms = 10

    def __init__(self, **overrides: object) -> None:
        for key, value in overrides.items():
            if not hasattr(self, key):
                raise ValueError("unknown setting " + key)
            setattr(self, key, value)
