"""MLflow's view of a loopml package: `mlflow.pyfunc.load_model(uri).predict(DataFrame)`.

The class is pickled by reference to this module, which MLflow carries inside the model
(`code_paths`): loading needs the model's own requirements, not loopml.
"""

from __future__ import annotations

import warnings

import mlflow.pyfunc
import pandas as pd

from loopml_runtime.predictor import Predictor

# MLflow's subclass hook re-enables its "Add type hints to the `predict` method" advice with
# simplefilter("once"), so no filter silences it: hide what is shown while the class is made.
_shown = warnings.showwarning
warnings.showwarning = lambda *args, **kwargs: None
try:

    class LoopmlPyfunc(mlflow.pyfunc.PythonModel):
        """`predict(DataFrame)` -> labels (classification) or values (regression)."""

        def load_context(self, context) -> None:
            self.predictor = Predictor(context.artifacts["package"])

        def predict(self, context, model_input, params=None):
            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            return self.predictor.predict(frame)
finally:
    warnings.showwarning = _shown
