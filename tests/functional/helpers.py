"""Names shared by the functional tests and their fixtures (tests/functional/conftest.py)."""

from __future__ import annotations

#: The Glue database of the feature store the ``store`` fixture builds on in-process moto.
DATABASE = "mlcycle_dev"
