"""Local development stack: a private PostgreSQL cluster and a single-node Kafka (KRaft) broker."""
