"""Kontakt's services: contacts (write side), projections (read side) and sync (Outlook)."""
