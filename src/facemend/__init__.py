"""facemend: face restoration after 'Rethinking Deep Face Restoration' (CVPR 2022).

`from facemend import FaceRestorer` is the Python API (see facemend.inference.api); importing
the package itself loads nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["FaceRestorer", "Restoration", "__version__"]

if TYPE_CHECKING:
    from facemend.inference.api import FaceRestorer, Restoration


def __getattr__(name: str) -> Any:
    """Import the API on first use, so that `import facemend` stays light (no torch)."""
    if name in ("FaceRestorer", "Restoration"):
        from facemend.inference import api

        return getattr(api, name)
    raise AttributeError(f"module 'facemend' has no attribute {name!r}")
