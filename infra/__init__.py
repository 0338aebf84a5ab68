"""gpulab's AWS resources, one ComponentResource per concern. Never imports torch."""
