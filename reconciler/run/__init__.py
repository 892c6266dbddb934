"""What one run leaves behind: the local lock, the service lease, the audit log, the run identity,
the state store."""
