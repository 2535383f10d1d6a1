"""gpu_node."""
