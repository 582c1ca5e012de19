"""The text family: a pretrained Hugging Face encoder with a task head, its tokenizer, and the
numbers a text column's drift is watched through.

    encoder/        the (LoRA-merged) encoder and its tokenizer, as `save_pretrained` writes them:
                    any Hugging Face tool reads the folder
    head.pt         the task head's state dict (one output per class, or 1 for regression)
    vocabulary.txt  the training texts' words (lower case), one per line: the out-of-vocabulary rate
    meta "text"     the text column, max_length, pad id, pooling, and the PCA that projects sentence
                    embeddings onto a few axes for drift

The network takes token ids padded with the pad id (any width); it cuts every batch to its longest
row, so a batch of short messages costs what short messages cost (`TextClassifier.forward`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch  # this module is imported for text models only, which need it

ENCODER_DIR = "encoder"
HEAD_FILE = "head.pt"
VOCABULARY_FILE = "vocabulary.txt"
BUCKET_ROWS = 64  # rows per forward pass when serving: a request's rows, sorted by length, in buckets
WORD = re.compile(r"[^\W\d_]+", re.UNICODE)  # words for the out-of-vocabulary rate: letters only


def quiet_transformers() -> None:
    """No download progress bars or advisory warnings from transformers: loopml loads local folders."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class TextClassifier(torch.nn.Module):
    """Encoder -> mean pooling over real tokens (as sentence-transformers pools) -> dropout -> linear head."""

    def __init__(self, encoder, n_outputs: int, pad_id: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.pad_id = int(pad_id)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, n_outputs)

    def embed(self, ids):
        """Sentence embeddings of padded token ids (batch, width)."""
        mask = ids != self.pad_id
        width = int(mask.sum(dim=1).max().item()) if ids.numel() else 1
        return self.pooled(ids[:, : max(width, 1)].long(), mask[:, : max(width, 1)])

    def pooled(self, ids, mask):
        """The encoder's outputs averaged over the real tokens (`mask`), as sentence-transformers pools."""
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def forward(self, ids):
        return self.head(self.dropout(self.embed(ids)))


@dataclass(frozen=True)
class TextModel:
    """What a text package is made of: the network, its tokenizer and the training vocabulary."""

    network: TextClassifier
    tokenizer: object
    vocabulary: list[str]


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # int64 (rows, width), padded with the pad id
    lengths: np.ndarray  # tokens per row before truncation (special tokens included)
    truncated: int  # rows longer than max_length, cut to it


def encode(tokenizer, texts: list[str], max_length: int, pad_to: int | None = None) -> Encoded:
    """Token ids for `texts`, cut to `max_length` tokens (a policy: counted, never an error) and
    padded to the longest row (or to `pad_to`)."""
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    lengths = np.fromiter((len(row) for row in full), dtype=np.int64, count=len(full))
    width = pad_to or max(1, min(max_length, int(lengths.max()) if len(lengths) else 1))
    ids = np.full((len(full), width), tokenizer.pad_token_id, dtype=np.int64)
    for i, row in enumerate(full):
        if len(row) > max_length:  # keep [CLS] ... and the final [SEP]
            row = row[: max_length - 1] + row[-1:]
        ids[i, : len(row)] = row
    return Encoded(ids, lengths, int((lengths > max_length).sum()))


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def vocabulary(texts, min_count: int = 2, limit: int = 50_000) -> list[str]:
    """The training texts' words seen at least `min_count` times (the commonest `limit`)."""
    from collections import Counter

    counts = Counter(w for text in texts for w in words(text))
    return [w for w, c in counts.most_common(limit) if c >= min_count]


def oov_rate(texts, known: set[str]) -> np.ndarray:
    """Share of each text's words that the training texts never used (NaN for a text without words)."""
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        found = words(text)
        if found:
            out[i] = sum(w not in known for w in found) / len(found)
    return out


def drift_columns(column: str, lengths: np.ndarray, oov: np.ndarray, embeddings: np.ndarray,
                  pca: dict) -> dict[str, np.ndarray]:  # fmt: skip
    """The numbers a text column is watched through: token length, out-of-vocabulary rate and the
    sentence embeddings projected on the training embeddings' first principal axes."""
    mean = np.asarray(pca["mean"], dtype=np.float32)
    axes = np.asarray(pca["components"], dtype=np.float32)
    projected = (np.asarray(embeddings, dtype=np.float32) - mean) @ axes.T
    out = {f"{column}.length": lengths.astype(np.float64), f"{column}.oov_rate": oov}
    for k in range(projected.shape[1]):
        out[f"{column}.embedding_{k + 1}"] = projected[:, k].astype(np.float64)
    return out


def fit_pca(embeddings: np.ndarray, components: int = 4) -> dict:
    """The training embeddings' mean and first principal axes (SVD of the centred matrix)."""
    x = np.asarray(embeddings, dtype=np.float64)
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return {"mean": mean.tolist(), "components": vt[:components].tolist()}


def save_text_model(path: Path, model: TextModel) -> None:
    """The encoder (with its tokenizer), the head and the vocabulary, into a package folder."""
    model.network.encoder.save_pretrained(path / ENCODER_DIR)
    model.tokenizer.save_pretrained(path / ENCODER_DIR)
    torch.save({k: v.detach().cpu() for k, v in model.network.head.state_dict().items()}, path / HEAD_FILE)
    (path / VOCABULARY_FILE).write_text("\n".join(model.vocabulary) + "\n", encoding="utf-8")


def load_tokenizer(path: Path):
    """(tokenizer, training vocabulary) from a package folder: all an ONNX variant needs besides its file."""
    from transformers import AutoTokenizer

    quiet_transformers()
    known = set((path / VOCABULARY_FILE).read_text(encoding="utf-8").split())
    return AutoTokenizer.from_pretrained(path / ENCODER_DIR), known


def load_text_model(path: Path, meta: dict, device: str) -> TextClassifier:
    """The network from a package folder (encoder and head)."""
    from transformers import AutoModel

    quiet_transformers()
    encoder = AutoModel.from_pretrained(path / ENCODER_DIR)
    n_outputs = len(meta["classes"]) if meta.get("classes") else 1
    model = TextClassifier(encoder, n_outputs, meta["text"]["pad_id"])
    model.head.load_state_dict(torch.load(path / HEAD_FILE, map_location="cpu", weights_only=True))
    return model.to(device).eval()


class ExportedText(torch.nn.Module):
    """A TextClassifier as ONNX takes it: no data-dependent cut of the padding (the caller sends each
    bucket at its own width), and the sentence embedding as a second output (drift watches it)."""

    OUTPUTS = ("logits", "sentence_embedding")

    def __init__(self, network: TextClassifier):
        super().__init__()
        self.network = network

    def forward(self, ids):
        pooled = self.network.pooled(ids, ids != self.network.pad_id)
        return self.network.head(pooled), pooled
