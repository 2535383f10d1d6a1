"""gpu_proxy."""
