"""Reasoning data: the record schema (schema.py), importers of public layouts and exporters for
trainers, thought segmentation, the synthetic arithmetic task and dataset statistics."""
from thinkc.data.schema import Record, read_records, read_records_with_skips, write_records  # noqa: F401
