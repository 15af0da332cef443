"""Payload sinks: where inference events are written (file, CloudEvents, Kafka, Redis Streams).

delivery.py holds what they all share (queue, batching, retries, dead letters, metrics); each
``<type>.py`` only encodes and sends, and is the only module that imports its client library
(an import-linter contract), loaded when a sink of that type is first configured.
"""
