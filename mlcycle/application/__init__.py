"""The application layer: wiring a runtime to a platform, local or deployed, and the demo's client.

Below it, the domain (settings, data, features, quality, modeling, registry, lineage, events, names);
above it, the shells (the CLI, the embedded AWS, infra, Lambda handlers, SageMaker scripts). See
docs/architecture.md, "Layers".
"""
