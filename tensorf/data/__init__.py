"""Datasets, cameras and ray batches."""
