"""Tests of the embedded AWS itself, against one instance per package run."""
