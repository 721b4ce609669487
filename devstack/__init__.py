"""Local tooling: the PostgreSQL + Kafka stack, the Graph-compatible server, `kontakt run`."""
