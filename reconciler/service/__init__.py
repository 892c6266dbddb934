"""The service side: the pinned HTTP contract, the embedded service, and the client."""
