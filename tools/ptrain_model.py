"""ptrain's model text read in Python, and the same model built in PyTorch and Keras.

The one Python reading of the model text: tools/compare-peers, tools/torch-evaluate and
tools/torch-gradient-check all build their models here, so a layer kind is added to them
in one place. Layers are indexed as ptrain names its tensors (PyTorch's nn.Sequential
index), and their inputs' shapes are worked out as ptrain's plan does.
"""


class ModelTextError(ValueError):
    """Model text that ptrain would refuse, or a layer this reader does not know."""


def tokens(text):
    """The model text's tokens: words, and the marks , ( ) ; each on its own."""
    out, word = [], ""
    for char in text.lower():
        if char in ",();" or char.isspace():
            if word:
                out.append(word)
            word = ""
            if not char.isspace():
                out.append(char)
        else:
            word += char
    if word:
        out.append(word)
    return out


def plan_layer(words, shape, flat):
    """One layer (not a residual block) from its words, on an input of `shape`: the layer
    and its output (shape, flat)."""
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
    return layer, shape, flat


def parse_layers(items, position, shape, flat, ends):
    """Layers from items[position:] up to one of `ends`: (layers, output shape, flat,
    the end found, the position after it). A residual block is {"kind": "residual",
    "body": [...], "shortcut": [...]}: body(x) + shortcut(x), the shortcut empty for the
    identity."""
    layers = []
    while True:
        if position < len(items) and items[position] == "residual":
            if position + 1 >= len(items) or items[position + 1] != "(":
                raise ModelTextError("residual without its layers in parentheses")
            if ")" in ends or flat:
                raise ModelTextError("a residual block inside another, or on a flat vector")
            body, body_shape, body_flat, end, position = parse_layers(items, position + 2, shape, flat, (";", ")"))
            shortcut, short_shape = [], shape
            if end == ";":
                shortcut, short_shape, _, _, position = parse_layers(items, position, shape, flat, (")",))
            if body_shape != short_shape or body_flat:
                raise ModelTextError(f"a residual block adds {body_shape} to {short_shape}")
            layers.append({"kind": "residual", "input": shape, "flat": flat, "body": body, "shortcut": shortcut})
            shape = body_shape
        else:
            words = []
            while position < len(items) and items[position] not in (",", "(", ")", ";"):
                words.append(items[position])
                position += 1
            if not words:
                raise ModelTextError("expected a layer in the model text")
            layer, shape, flat = plan_layer(words, shape, flat)
            layers.append(layer)
        end = items[position] if position < len(items) else ""
        position += 1
        if end in ends:
            return layers, shape, flat, end, position
        if end != ",":
            raise ModelTextError(f"expected a comma or one of {ends}, found {end!r}")


def parse_model(text):
    """ptrain's model text: {"input": (h, w, c), "layers": [dict], "classes": K}, with each
    layer's input shape worked out. Raises ModelTextError on text ptrain would refuse."""
    items = tokens(text)
    if len(items) < 3 or items[0] != "input" or items[2] != ",":
        raise ModelTextError(f"model text without an input shape: {text!r}")
    h, w, c = (int(v) for v in items[1].split("x"))
    layers, shape, _, _, _ = parse_layers(items, 3, (h, w, c), False, ("",))
    return {"input": (h, w, c), "layers": layers, "classes": shape[2]}


def torch_residual_class():
    """PyTorch's module for ptrain's residual block: forward(x) = body(x) + shortcut(x),
    its children two nn.Sequential named body and shortcut (empty for the identity)."""
    from torch import nn

    class Residual(nn.Module):
        def __init__(self, body, shortcut):
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    return Residual


def torch_modules(layers):
    """The layers as PyTorch modules, in order."""
    from torch import nn
    modules = []
    for layer in layers:
        h, w, c = layer["input"]
        kind = layer["kind"]
        if kind == "residual":
            modules.append(torch_residual_class()(nn.Sequential(*torch_modules(layer["body"])),
                                                  nn.Sequential(*torch_modules(layer["shortcut"]))))
        elif kind == "conv":
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
    return modules


def torch_model(model):
    """The model as PyTorch's nn.Sequential, indexed as ptrain names its tensors (a
    residual block at index K names its tensors K.body.I and K.shortcut.I)."""
    from torch import nn
    model_ = nn.Sequential(*torch_modules(model["layers"]))
    for module in model_.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):  # Keras's initialisation, as ptrain's
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model_


def keras_layers(layers, x):
    """Applies the layers to the Keras tensor x (functional API) and returns the result."""
    from keras import layers as k
    for layer in layers:
        kind = layer["kind"]
        if kind == "residual":
            x = k.Add()([keras_layers(layer["body"], x), keras_layers(layer["shortcut"], x)])
        elif kind == "conv":
            x = k.Conv2D(layer["filters"], layer["kernel"], strides=layer["stride"],
                         padding="same" if layer["same"] else "valid", use_bias=layer["bias"])(x)
        elif kind == "batchnorm":
            x = k.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)
        elif kind == "relu":
            x = k.ReLU()(x)
        elif kind == "maxpool":
            x = k.MaxPooling2D(layer["size"], strides=layer["stride"])(x)
        elif kind == "avgpool":
            x = k.AveragePooling2D(layer["size"], strides=layer["stride"])(x)
        elif kind == "globalavgpool":
            x = k.GlobalAveragePooling2D(keepdims=True)(x)
        elif kind == "flatten":
            x = k.Flatten()(x)
        elif kind == "dense":
            x = k.Dense(layer["units"], use_bias=layer["bias"])(x)
        elif kind == "dropout":
            x = k.Dropout(layer["rate"])(x)
    return x


def keras_model(model):
    """The model in Keras, functional (channels-last, so a flatten's order differs; speed
    does not)."""
    import keras
    inputs = keras.Input(model["input"])
    return keras.Model(inputs, keras_layers(model["layers"], inputs))
