"""The top layer: the `vared2` CLI and the Ray adapters (the only code that imports Ray)."""
