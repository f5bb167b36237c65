"""Data management: contracts, preparation of uploads into curated Parquet, quarantine."""
