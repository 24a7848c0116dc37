"""Data Portal: an audited, multi-user data-editing portal on PostgreSQL."""
