"""Insights: statistical segmentation of customers (see README.md)."""
