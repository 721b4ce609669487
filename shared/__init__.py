"""Kontakt's shared package: the public event contract, settings and helpers used by every service."""
