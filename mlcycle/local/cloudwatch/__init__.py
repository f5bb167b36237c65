"""CloudWatch in the embedded AWS: what moto stores but never does (alarm evaluation)."""
