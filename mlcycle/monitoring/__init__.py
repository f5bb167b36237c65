"""Monitoring's statistical core: drift of data and predictions, in NumPy (no SciPy, no scikit-learn).

The monitor Lambdas call it, so it depends only on numpy, pandas and pyarrow (the AWS SDK for pandas
layer): SciPy would add ~0.9 s of cold start and 136 MiB. ``statistics`` holds the two-sample tests and
distances (checked against SciPy's values), ``distributions`` the tail probabilities they need.
"""
