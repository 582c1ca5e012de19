"""A small CNN for scikit-learn's 8x8 digits; loopml calls build() with the data's shape."""

from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self, n_outputs: int, channels: int, dropout: float):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * channels * 16, n_outputs))

    def forward(self, x):
        # loopml feeds (batch, 64) standardized pixels; the CNN wants (batch, 1, 8, 8) images
        return self.head(self.features(x.view(-1, 1, 8, 8)))


def build(n_features: int, n_outputs: int, channels: int = 32, dropout: float = 0.1) -> nn.Module:
    if n_features != 64:
        raise ValueError(f"DigitsCNN expects 64 pixel features (8x8); got {n_features}")
    return DigitsCNN(n_outputs, channels, dropout)
