"""Lambda handlers: thin shells over the mlcycle library (decorators, parse, one call, return)."""
