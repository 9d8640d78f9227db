"""The benchmark's baseline: multinomial logistic regression on colour histograms and edge
density, the kind of model one would try before a CNN. Plain numpy, trained on the same
train split and evaluated on the same frozen evaluation split as the CNN.

Features per image (uint8 RGB at the dataset's input size): an 8-bin histogram per RGB
channel, a 12-bin hue histogram weighted by saturation, 4-bin saturation and value
histograms, and the share of edge pixels (Sobel magnitude over 0.1, 0.25 and 0.5) overall and
over a 4x4 grid at 0.25."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = (rgb[..., i] for i in range(3))
    value = rgb.max(axis=-1)
    chroma = value - rgb.min(axis=-1)
    saturation = np.where(value > 0, chroma / np.maximum(value, 1e-6), 0.0)
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(value == r, ((g - b) / safe) % 6, np.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return np.where(chroma > 0, hue / 6.0, 0.0), saturation, value


def features(images: np.ndarray) -> np.ndarray:
    """[N, S, S, 3] uint8 -> [N, 75] float32."""
    out = []
    for image in images:
        rgb = image.astype(np.float32) / 255.0
        parts = [np.histogram(rgb[..., c], bins=8, range=(0, 1))[0] / rgb[..., c].size for c in range(3)]
        hue, sat, val = _hsv(rgb)
        parts.append(np.histogram(hue, bins=12, range=(0, 1), weights=sat)[0] / hue.size)
        parts.append(np.histogram(sat, bins=4, range=(0, 1))[0] / sat.size)
        parts.append(np.histogram(val, bins=4, range=(0, 1))[0] / val.size)
        grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        gx = np.zeros_like(grey)
        gy = np.zeros_like(grey)
        # Sobel on the interior; the border row and column stay zero.
        gx[1:-1, 1:-1] = (
            grey[:-2, 2:] + 2 * grey[1:-1, 2:] + grey[2:, 2:] - grey[:-2, :-2] - 2 * grey[1:-1, :-2] - grey[2:, :-2]
        ) / 4
        gy[1:-1, 1:-1] = (
            grey[2:, :-2] + 2 * grey[2:, 1:-1] + grey[2:, 2:] - grey[:-2, :-2] - 2 * grey[:-2, 1:-1] - grey[:-2, 2:]
        ) / 4
        magnitude = np.hypot(gx, gy)
        parts.append(np.array([(magnitude > t).mean() for t in (0.1, 0.25, 0.5)]))
        h, w = magnitude.shape
        cells = (magnitude[: h // 4 * 4, : w // 4 * 4] > 0.25).reshape(4, h // 4, 4, w // 4).mean(axis=(1, 3))
        parts.append(cells.flatten())
        out.append(np.concatenate(parts))
    return np.asarray(out, dtype=np.float32)


@dataclass
class LogisticRegression:
    weights: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def fit(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    l2: float = 1e-3,
    steps: int = 2000,
    learning_rate: float = 0.5,
    class_weights: np.ndarray | None = None,
) -> LogisticRegression:
    """Full-batch gradient descent with momentum on the weighted cross-entropy + L2."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    xs = (x - mean) / scale
    n, d = xs.shape
    onehot = np.eye(num_classes)[y]
    sample_w = np.ones(n) if class_weights is None else class_weights[y]
    sample_w = sample_w / sample_w.sum()
    weights, bias = np.zeros((d, num_classes)), np.zeros(num_classes)
    v_w, v_b = np.zeros_like(weights), np.zeros_like(bias)
    for _ in range(steps):
        z = xs @ weights + bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        grad = (p - onehot) * sample_w[:, None]
        g_w = xs.T @ grad + l2 * weights
        g_b = grad.sum(axis=0)
        v_w = 0.9 * v_w + g_w
        v_b = 0.9 * v_b + g_b
        weights -= learning_rate * v_w
        bias -= learning_rate * v_b
    return LogisticRegression(weights, bias, mean, scale)
