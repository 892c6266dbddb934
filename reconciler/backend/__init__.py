"""Backends: where API users live (reconciler/backend/base.py is the seam, registry.py picks one)."""
