"""facemend: face restoration after 'Rethinking Deep Face Restoration' (CVPR 2022)."""

__version__ = "0.1.0"
