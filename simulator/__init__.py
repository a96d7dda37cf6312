"""A faithful stand-in for the providers: their paths, auth, bodies, limits and faults."""
