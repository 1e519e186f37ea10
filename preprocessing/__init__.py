"""Turning videos and annotations into WebDataset shards (DATA.md); pure Python + PyAV, no Ray."""
