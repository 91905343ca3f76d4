"""Operations: Prometheus metrics (one home for their definitions) and OpenTelemetry traces."""
