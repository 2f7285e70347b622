"""The Kafka contract as code and data: typed events, JSON Schemas, examples, codec."""
