"""Validated configuration, built once and passed down: the server's ``Settings``
(settings.py) and each model's ``model.yaml`` (model.py)."""
