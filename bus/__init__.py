"""The contracts: every message on RabbitMQ and every record in Redis is defined here once."""
