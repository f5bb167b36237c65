"""The example ML problem that ships with mlcycle (customer churn)."""
