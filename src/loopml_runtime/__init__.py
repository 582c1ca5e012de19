"""The runtime every loopml model carries: load a model package and predict, with nothing else.

It imports only NumPy and pandas (plus torch or scikit-learn for the model kinds that need them),
never `loopml` itself: MLflow copies this package into each logged model (`code_paths`), so
`mlflow.pyfunc.load_model` works in an environment that holds only the model's own
requirements. loopml's own stages and server load packages through the same code.
"""

from loopml_runtime.errors import InputError, PackageError
from loopml_runtime.package import FORMAT, META_FILE, Input, derive_package, package_size_mb, save_package
from loopml_runtime.predictor import Predictor

__all__ = [
    "FORMAT",
    "META_FILE",
    "Input",
    "InputError",
    "PackageError",
    "Predictor",
    "derive_package",
    "package_size_mb",
    "save_package",
]
