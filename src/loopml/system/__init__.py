"""Facts about the machine (OS, CPU, NVIDIA driver, GPUs, torch build, containers) and verdicts.

Nothing here imports torch, and NVML (nvidia-ml-py) is optional: `loopml doctor` must work
exactly where the ML stack is broken.
"""
