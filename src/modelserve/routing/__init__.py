"""Which model version answers a request: name and version resolution (and, later, traffic
experiments)."""
