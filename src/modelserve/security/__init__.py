"""Authentication and authorization (tokens, scopes) and TLS material. Pure logic: the
transports enforce it, each in one place."""
