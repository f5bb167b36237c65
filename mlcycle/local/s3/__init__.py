"""S3 in the embedded AWS: bucket policies enforced as AWS would (policies), and event notifications
delivered (notifications)."""
