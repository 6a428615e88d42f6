"""Roles, personal data, encryption at rest, accounts, the audit chain, webhook targets."""
