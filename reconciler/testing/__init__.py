"""The conformance kit every backend's tests inherit (docs/backends.md): subclass
`BackendConformance`, provide a `harness` fixture yielding a `Harness`, and pytest runs the cases."""

from reconciler.testing.cases import BackendConformance
from reconciler.testing.harness import Harness

__all__ = ["BackendConformance", "Harness"]
