"""Prefect flows that run the synthdata DVC pipeline (see flows/pipeline.py)."""
