"""Engines behind the gpu.v1 contract: the deterministic mock and the real models."""
