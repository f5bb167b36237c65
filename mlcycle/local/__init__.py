"""The embedded AWS: moto in server mode, made real where moto fakes what the cycle needs.

``server`` composes the pieces; each module patches one part of moto and exposes ``install(ctx)``:
``lambdas`` (handlers run in-process), ``events`` (EventBridge targets and schedules),
``sagemaker_jobs`` (training/processing jobs as local processes), ``endpoints`` (local model servers,
InvokeEndpoint, data capture). ``provision`` creates the platform from the synthesized CDK template.
"""
