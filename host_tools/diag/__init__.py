"""The technician's diagnostics client: talks to a unit's serial console (see docs/diag.md)."""
