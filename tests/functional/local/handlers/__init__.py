"""Lambda handlers deployed by the embedded AWS tests (``tests.functional.local.handlers.basic.<name>``)."""
