"""Lambda in the embedded AWS: our handlers run in this process instead of in Docker (invocations)."""
