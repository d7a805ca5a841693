"""Networks only: builders by name in pipeline.models.registry, one module per family."""
