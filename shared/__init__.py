"""Kontakt's shared package: the public event contract, settings and common helpers."""
