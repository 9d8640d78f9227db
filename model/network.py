"""The moderation network: a six-layer VGG-style CNN with its preprocessing built in.

The model takes uint8 RGB images of any height and width and does the cast, resize and
rescale itself, so an exported version cannot be fed pixels prepared differently from the
ones it was trained on. The layer names are part of the contract with model/onnx_export.py,
which rebuilds the same computation from these layers' weights."""

from __future__ import annotations

import keras

CONV_FILTERS = (32, 64, 128, 128)
DENSE_UNITS = 256
HEADS = ("softmax", "sigmoid")
POOLINGS = ("flatten", "global_max")


def conv_layer_name(index: int) -> str:
    return f"conv{index + 1}"


def build_model(
    class_names: list[str] | tuple[str, ...],
    input_size: int = 128,
    head: str = "softmax",
    dropout: float = 0.5,
    pooling: str = "flatten",
) -> keras.Model:
    """Four 3x3 conv + 2x2 max-pool blocks, dense 256 + dropout, dense per class.

    Input: uint8 [batch, H, W, 3] for any H, W. Output: float32 [batch, len(class_names)],
    softmax over the classes, or independent sigmoids for head="sigmoid". pooling="flatten"
    feeds the dense layer the whole last feature map (input_size/16 square), position by
    position; "global_max" only the strongest response of each feature anywhere in the image."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, not {pooling!r}")
    if len(class_names) < 2:
        raise ValueError("need at least two classes")
    # Four 2x2 pools must leave at least one pixel, and the ONNX export relies on every pool
    # seeing an even size (Keras' 'valid' pooling would silently drop an odd last row).
    if input_size < 16 or input_size % 16:
        raise ValueError(f"input_size must be a positive multiple of 16, not {input_size}")

    images = keras.Input(shape=(None, None, 3), dtype="uint8", name="images")
    x = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32"), name="to_float")(images)
    # Bilinear without antialiasing: a no-op when the server already sends input_size pixels,
    # which keeps the ONNX graph (that has no resize) numerically identical.
    x = keras.layers.Resizing(input_size, input_size, interpolation="bilinear", name="resize")(x)
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    for i, filters in enumerate(CONV_FILTERS):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=conv_layer_name(i))(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    if pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalMaxPooling2D(name="global_max")(x)
    x = keras.layers.Dense(DENSE_UNITS, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    # float32 even when training under a mixed-precision policy: a bfloat16 softmax would round
    # confident scores to 1.0 and starve the loss of gradient.
    scores = keras.layers.Dense(len(class_names), activation=head, dtype="float32", name="scores")(x)
    return keras.Model(images, scores, name="moderation_cnn")
