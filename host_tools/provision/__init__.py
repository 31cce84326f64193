"""Provisioning: unit identities and the keys they share with the receiver."""
