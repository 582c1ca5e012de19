"""GPU paths: CUDA training with bf16 autocast and batch-size probing (skipped without CUDA)."""

import pytest
import torch

from tests.conftest import loopml, loopml_json

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_digits_train_on_cuda_with_bf16(digits):
    loopml("validate", cwd=digits)
    result = loopml_json("train", cwd=digits, env={"LOOPML_TRAIN__EPOCHS": "5"})
    assert result["device"].startswith("cuda")
    assert result["precision"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    assert result["batch_size"] >= 32  # probed from GPU memory, capped by the training rows
    evaluated = loopml_json("evaluate", cwd=digits)
    assert evaluated["metrics"]["accuracy"] >= 0.9
