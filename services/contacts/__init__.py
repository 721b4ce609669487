"""The contacts service: the write side, event-sourced on PostgreSQL."""
