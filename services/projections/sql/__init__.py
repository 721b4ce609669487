"""SQL of the read models: one module per read model."""
