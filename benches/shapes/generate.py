"""Writes the conv-weight shape lists the `architectures` bench reads (one file per network).

Run once, from the repository root, with torchvision installed (no weights are downloaded: the
models are built freshly initialized, on CPU):

    python3 benches/shapes/generate.py

Each line of a list is `name dims...`, the parameter name and shape of one conv weight, in the
order of the model's modules (the order cs-init processes a checkpoint's tensors in).
"""

import pathlib

import torchvision
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent

TORCHVISION = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "convnext_tiny": "convnext_tiny",
    "efficientnet_b0": "efficientnet_b0",
    "mobilenet_v3_large": "mobilenet_v3_large",
    "regnet_y_400mf": "regnet_y_400mf",
    "resnext50_32x4d": "resnext50_32x4d",
    "inception_v3": "inception_v3",
    "r3d_18": "r3d_18",
}


class Audio(nn.Module):
    """A 1-D audio model of the kind issue 12 measured: a learned STFT-like front end (258
    filters of 256 taps = 129 frequency bins x real/imaginary), a conv1d over those bins, and
    period-style 2-D convs with `[k, 1]` kernels over the raw waveform and its features."""

    def __init__(self):
        super().__init__()
        self.frontend = nn.Conv1d(1, 258, 256, stride=128, bias=False)
        self.bins = nn.Conv1d(129, 128, 3, padding=1)
        self.period = nn.Conv2d(1, 1024, (512, 1))
        self.features = nn.Conv2d(1024, 128, (64, 1))


def conv_shapes(model):
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [
        (f"{name}.weight", tuple(module.weight.shape))
        for name, module in model.named_modules()
        if isinstance(module, convs)
    ]


def write(name, model):
    lines = [f"{param} {' '.join(map(str, dims))}" for param, dims in conv_shapes(model)]
    (OUT / f"{name}.txt").write_text("\n".join(lines) + "\n")
    print(f"{name}: {len(lines)} conv weights")


def main():
    for name, builder in TORCHVISION.items():
        write(name, torchvision.models.get_model(builder, weights=None))
    write("audio", Audio())


if __name__ == "__main__":
    main()
