"""Fast checks of the text family's pure parts, on the real packaged MiniLM tokenizer and encoder:
tokenizing with truncation by policy, the network cutting padding per batch, LoRA merged without
changing answers, the figures text drift is watched through, config and data refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")

import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from loopml.config import ModelConfig  # noqa: E402
from loopml.errors import ModelError  # noqa: E402
from loopml.examples import TOPICS, tickets  # noqa: E402
from loopml.train.text import encoder_path  # noqa: E402
from loopml_runtime import Input, InputError  # noqa: E402
from loopml_runtime.package import conform  # noqa: E402
from loopml_runtime.text import TextClassifier, drift_columns, encode, fit_pca, oov_rate, vocabulary  # noqa: E402

MINILM = encoder_path("all-MiniLM-L6-v2", Path.cwd())


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def network(tokenizer):
    torch.manual_seed(0)
    return TextClassifier(AutoModel.from_pretrained(MINILM), 4, tokenizer.pad_token_id).eval()


def test_long_texts_are_cut_to_max_length_and_counted(tokenizer):
    texts = ["short one", "word " * 100]
    encoded = encode(tokenizer, texts, max_length=16)
    assert encoded.ids.shape == (2, 16)
    assert encoded.truncated == 1 and encoded.lengths[1] > 16
    assert encoded.ids[1, -1] == tokenizer.sep_token_id  # the cut text still ends as BERT expects
    assert (encoded.ids[0, encoded.lengths[0] :] == tokenizer.pad_token_id).all()


def test_padding_never_changes_an_answer(network, tokenizer):
    """The network cuts each batch to its longest row: padded or not, the logits are the same."""
    tight = encode(tokenizer, ["my parcel never arrived"], 64)
    padded = encode(tokenizer, ["my parcel never arrived"], 64, pad_to=64)
    assert padded.ids.shape[1] == 64 > tight.ids.shape[1]
    with torch.inference_mode():
        a = network(torch.from_numpy(tight.ids))
        b = network(torch.from_numpy(padded.ids))
    assert torch.allclose(a, b, atol=1e-5)


def test_lora_merged_answers_as_the_adapters_do(tokenizer):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = TextClassifier(AutoModel.from_pretrained(MINILM), 4, tokenizer.pad_token_id).eval()
    model.encoder = get_peft_model(model.encoder, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    assert trainable / total < 0.01  # the adapters and the head: well under 1% of the weights
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero (a no-op); make the adapters do something
            torch.nn.init.normal_(param, std=0.02)
    ids = torch.from_numpy(encode(tokenizer, ["the app crashes", "I was charged twice for the invoice"], 64).ids)
    with torch.inference_mode():
        before = model(ids)
        model.encoder = model.encoder.merge_and_unload()
        after = model(ids)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert torch.allclose(before, after, atol=1e-4)


def test_drift_figures_of_texts():
    known = set(vocabulary(["the parcel never arrived", "the parcel was late", "the invoice is wrong"], min_count=1))
    rates = oov_rate(["the parcel arrived", "quantum chromodynamics rocks", "1234"], known)
    assert rates[0] == 0 and rates[1] == 1 and np.isnan(rates[2])
    embeddings = np.random.default_rng(0).normal(size=(50, 8))
    pca = fit_pca(embeddings, components=3)
    columns = drift_columns("text", np.array([5] * 50), np.zeros(50), embeddings, pca)
    assert list(columns) == ["text.length", "text.oov_rate", "text.embedding_1", "text.embedding_2", "text.embedding_3"]
    assert abs(columns["text.embedding_1"].mean()) < 1e-6  # centred on the training embeddings
    assert columns["text.embedding_1"].var() >= columns["text.embedding_2"].var()  # the first axis holds most


def test_a_text_column_takes_strings_only():
    spec = [Input("text", "string", None, "text")]
    with pytest.raises(InputError, match=r"column 'text' takes text \(strings\); row 1 holds int 5"):
        conform(pd.DataFrame({"text": ["fine", 5]}), spec)
    assert conform(pd.DataFrame({"text": ["fine", ""]}), spec)["text"].tolist() == ["fine", None]


def test_text_model_config_is_checked():
    with pytest.raises(ValueError, match="a text model needs encoder"):
        ModelConfig(type="text")
    with pytest.raises(ValueError, match="target_modules"):
        ModelConfig(type="text", encoder="all-MiniLM-L6-v2", lora={"target_modules": []})
    assert ModelConfig(type="text", encoder="x", lora=None).lora is None  # full fine-tuning


def test_a_missing_encoder_folder_is_named(tmp_path):
    with pytest.raises(ModelError, match=r"no Hugging Face model folder at .*nope.*packaged name: all-minilm-l6-v2"):
        encoder_path("nope", tmp_path)
    assert (encoder_path("sentence-transformers/all-MiniLM-L6-v2", tmp_path) / "config.json").is_file()


def test_the_example_needs_more_than_a_keyword_rule():
    """The template's gate (accuracy >= 0.9) is out of a keyword rule's reach on these messages."""
    frame = tickets(2000)
    assert frame.equals(tickets(2000))  # deterministic
    assert sorted(frame["label"].unique()) == sorted(TOPICS)

    def rule(text: str) -> str:
        text = text.lower()
        return max(TOPICS, key=lambda label: sum(text.count(w) for w in TOPICS[label]["things"]))

    assert (frame["text"].map(rule) == frame["label"]).mean() < 0.8
    reviews = tickets(200, style="reviews")
    assert set(reviews["label"]) == {"review"} and reviews["text"].str.len().between(10, 300).all()


def test_validation_reviews_a_text_column():
    from loopml.data import roles as R
    from loopml.data.checks import review

    frame = pd.DataFrame({"text": ["a fine message", "", None, 42, "ok", "caf\ufffd au lait", "x" * 20_001] * 5,
                          "label": ["a", "b"] * 17 + ["a"]})  # fmt: skip
    inferred = R.infer_roles(frame, "label")
    warnings, failures = review(frame, "label", "classification", inferred, {"text": R.TEXT}, None, {})
    text = [w.message for w in warnings if w.kind == "text"]
    assert any("5 value(s) that are not text, e.g. 42" in m for m in text)
    assert any("10 empty or missing text(s)" in m for m in text)
    assert any("U+FFFD" in m and "data.encoding" in m for m in text)
    assert any("under 3 characters, e.g. 'ok'" in m for m in text)
    assert any("over 20,000 characters" in m for m in text)
    _, failures = review(frame, "label", "classification", inferred, {"text": R.TEXT}, None, {"text": "error"})
    assert failures and failures[0].check == "check text"
