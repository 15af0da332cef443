"""Transports: the only code that knows HTTP or gRPC. They decode wire bytes into neutral
requests, call the DataPlane, and encode its neutral answers."""
