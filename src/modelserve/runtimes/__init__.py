"""Runtimes: small adapters from a model artifact to ``predict(dict[str, ndarray])``.

Each framework is imported only inside its own module, and that module only when a model uses it.
"""
