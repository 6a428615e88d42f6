"""Definitions: plain data describing tables, mappings and (later) segments and tiers."""
