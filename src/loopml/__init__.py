"""loopml: the machine-learning lifecycle as one closed loop.

The public Python surface is small on purpose: load a project, run its stages.
Heavy dependencies (torch, mlflow, dvc) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
