"""Helpers the embedded AWS's services share: moto's conventions, S3 and tar files, job processes."""
