"""Facts about the EC2 GPU instance families gpulab accepts.

Only NVIDIA GPUs on x86-64 hosts: the Deep Learning AMI that gpulab boots is the x86-64 NVIDIA one,
so g4ad (AMD) and g5g (Arm) are left out on purpose.
"""

# family -> (GPU model, vCPU quota that covers it)
GPU_FAMILIES: dict[str, str] = {
    "g4dn": "NVIDIA T4",
    "g5": "NVIDIA A10G",
    "g6": "NVIDIA L4",
    "g6e": "NVIDIA L40S",
    "gr6": "NVIDIA L4",
    "p3": "NVIDIA V100",
    "p3dn": "NVIDIA V100",
    "p4d": "NVIDIA A100",
    "p4de": "NVIDIA A100 80GB",
    "p5": "NVIDIA H100",
    "p5e": "NVIDIA H200",
    "p5en": "NVIDIA H200",
    "p6-b200": "NVIDIA B200",
}


def family_of(instance_type: str) -> str:
    return instance_type.split(".", 1)[0]


def quota_class(instance_type: str) -> str:
    """'G' or 'P': EC2 counts G/VT and P instances against different vCPU quotas."""
    return "P" if family_of(instance_type).startswith("p") else "G"
