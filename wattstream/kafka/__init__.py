"""Kafka-compatible bus: faust workers running the template's stream consumers."""
