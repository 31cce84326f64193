"""Serial diagnostics console on the unit, for field technicians (see docs/diag.md)."""
