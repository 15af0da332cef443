"""Inference from streams: ``--stream-source redis://…/<stream>`` and ``kafka://…/<topic>``
(docs/payload-logging.md, "Inference from a stream").

source.py serves the requests (shared by both brokers); redis.py and kafka.py know the brokers
and are the only modules here that import their client library, loaded when a source of that
kind is configured.
"""
