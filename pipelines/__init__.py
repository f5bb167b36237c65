"""Code that runs inside SageMaker jobs and endpoints (scikit-learn container contract)."""
