"""The kubelet player's tests lay out pods under the same traversable root as the
end-to-end tests; the fixture is imported here so pytest finds it for this package too."""

from __future__ import annotations

from tests.e2e.conftest import pod_root

__all__ = ["pod_root"]
