"""Hardware abstraction: device interfaces, and backends by name, chosen by the board config."""
