"""What the services share: event models, Kafka I/O, settings, errors, stores.

No service imports another service; each imports only this package.
"""
