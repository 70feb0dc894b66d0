"""ptrain's model text read in Python, and the same model built in PyTorch and Keras.

The one Python reading of the model text: tools/compare-peers, tools/torch-evaluate and
tools/torch-gradient-check all build their models here, so a layer kind is added to them
in one place. Layers are indexed as ptrain names its tensors (PyTorch's nn.Sequential
index), and their inputs' shapes are worked out as ptrain's plan does.
"""


class ModelTextError(ValueError):
    """Model text that ptrain would refuse, or a layer this reader does not know."""


def parse_model(text):
    """ptrain's model text: {"input": (h, w, c), "layers": [dict], "classes": K}, with each
    layer's input shape worked out. Raises ModelTextError on text ptrain would refuse."""
    items = [item.split() for item in text.lower().split(",")]
    if not items or not items[0] or items[0][0] != "input":
        raise ModelTextError(f"model text without an input shape: {text!r}")
    h, w, c = (int(v) for v in items[0][1].split("x"))
    shape, flat = (h, w, c), False
    layers = []
    for words in items[1:]:
        kind, rest = words[0], words[1:]
        layer = {"kind": kind, "input": shape, "flat": flat}
        if kind == "conv":
            filters, kernel = int(rest[0]), int(rest[1].split("x")[0])
            stride = int(rest[rest.index("stride") + 1]) if "stride" in rest else 1
            same = "same" in rest
            pad = (kernel - 1) // 2 if same else 0
            layer.update(filters=filters, kernel=kernel, stride=stride, same=same, padding=pad, bias="nobias" not in rest)
            shape = ((shape[0] + 2 * pad - kernel) // stride + 1, (shape[1] + 2 * pad - kernel) // stride + 1, filters)
        elif kind in ("maxpool", "avgpool"):
            size = int(rest[0])
            stride = int(rest[rest.index("stride") + 1]) if "stride" in rest else size
            layer.update(size=size, stride=stride)
            shape = ((shape[0] - size) // stride + 1, (shape[1] - size) // stride + 1, shape[2])
        elif kind == "globalavgpool":
            shape = (1, 1, shape[2])
        elif kind == "flatten":
            shape, flat = (1, 1, shape[0] * shape[1] * shape[2]), True
        elif kind == "dense":
            layer.update(units=int(rest[0]), bias="nobias" not in rest)
            shape = (1, 1, int(rest[0]))
        elif kind == "dropout":
            layer.update(rate=float(rest[0]))
        elif kind not in ("batchnorm", "relu"):
            raise ModelTextError(f"unknown layer {kind!r} in the model text")
        layers.append(layer)
    return {"input": (h, w, c), "layers": layers, "classes": shape[2]}


def torch_model(model):
    """The model as PyTorch's nn.Sequential, indexed as ptrain names its tensors."""
    from torch import nn
    modules = []
    for layer in model["layers"]:
        h, w, c = layer["input"]
        kind = layer["kind"]
        if kind == "conv":
            modules.append(nn.Conv2d(c, layer["filters"], layer["kernel"], stride=layer["stride"],
                                     padding=layer["padding"], bias=layer["bias"]))
        elif kind == "batchnorm":
            modules.append(nn.BatchNorm1d(h * w * c) if layer["flat"] else nn.BatchNorm2d(c))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(layer["size"], stride=layer["stride"]))
        elif kind == "avgpool":
            modules.append(nn.AvgPool2d(layer["size"], stride=layer["stride"]))
        elif kind == "globalavgpool":
            modules.append(nn.AdaptiveAvgPool2d(1))
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "dense":
            modules.append(nn.Linear(h * w * c, layer["units"], bias=layer["bias"]))
        elif kind == "dropout":
            modules.append(nn.Dropout(layer["rate"]))
    model_ = nn.Sequential(*modules)
    for module in model_:
        if isinstance(module, (nn.Conv2d, nn.Linear)):  # Keras's initialisation, as ptrain's
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model_


def keras_model(model):
    """The model in Keras (channels-last, so a flatten's order differs; speed does not)."""
    import keras
    from keras import layers
    stack = [keras.Input(model["input"])]
    for layer in model["layers"]:
        kind = layer["kind"]
        if kind == "conv":
            stack.append(layers.Conv2D(layer["filters"], layer["kernel"], strides=layer["stride"],
                                       padding="same" if layer["same"] else "valid", use_bias=layer["bias"]))
        elif kind == "batchnorm":
            stack.append(layers.BatchNormalization(momentum=0.9, epsilon=1e-5))
        elif kind == "relu":
            stack.append(layers.ReLU())
        elif kind == "maxpool":
            stack.append(layers.MaxPooling2D(layer["size"], strides=layer["stride"]))
        elif kind == "avgpool":
            stack.append(layers.AveragePooling2D(layer["size"], strides=layer["stride"]))
        elif kind == "globalavgpool":
            stack.append(layers.GlobalAveragePooling2D(keepdims=True))
        elif kind == "flatten":
            stack.append(layers.Flatten())
        elif kind == "dense":
            stack.append(layers.Dense(layer["units"], use_bias=layer["bias"]))
        elif kind == "dropout":
            stack.append(layers.Dropout(layer["rate"]))
    return keras.Sequential(stack)
