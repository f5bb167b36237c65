"""The example ML problem that ships with mlcycle (customer churn): its settings, data and generator.

Part of the application layer: the demo, the CLI's fallback settings and the tests load it; no bundle that
goes to AWS contains it.
"""
