"""Accounts, organisations, memberships and the permission policy."""
