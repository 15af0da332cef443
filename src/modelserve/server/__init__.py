"""The process level: the composition root (compose.py) and the ``--workers`` supervisor."""
