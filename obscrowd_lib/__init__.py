"""obscrowd: multi-portrait biometric unlinkability under generative editing.

The library holds the method; the numbered notebooks in ``notebooks/`` tell the story.
Importing this package has no side effects (no downloads, no seeding, no rcParams).
"""

__version__ = "0.1.0"
