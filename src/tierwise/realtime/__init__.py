"""The real-time plane: intake, the worker (lease, loop, rounds, merges) and its
in-memory caches."""
