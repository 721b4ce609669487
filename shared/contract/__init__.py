"""The public event contract: what Kontakt publishes on Kafka and what it consumes."""
