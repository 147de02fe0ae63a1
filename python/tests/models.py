"""Models for the tests: torchvision's ResNet-18 (or the same network with the same state-dict
names and initialization when torchvision is absent), and a module tree made from any state dict."""

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths, inplanes = [64, 128, 256, 512], 64
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(BasicBlock(inplanes, planes, stride), BasicBlock(planes, planes))
            self.add_module(f"layer{i + 1}", layer)
            inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(seed=0):
    """torchvision's ResNet-18 as ``torch.manual_seed(seed); resnet18()`` gives it."""
    torch.manual_seed(seed)
    try:
        import torchvision
    except ImportError:
        return ResNet18()
    return torchvision.models.resnet18()


def from_state_dict(state):
    """A module tree holding ``state``: rank-3..5 ``*weight`` tensors as convs, every other tensor
    as a buffer, under their dotted names."""
    root = nn.Module()
    conv_first = lambda key: not (key.endswith("weight") and state[key].dim() in (3, 4, 5))
    for key in sorted(state, key=conv_first):
        t = state[key]
        *path, leaf = key.split(".")
        module = root
        for i, part in enumerate(path):
            child = getattr(module, part, None) if part in module._modules else None
            if child is None:
                is_conv = i == len(path) - 1 and leaf == "weight" and t.dim() in (3, 4, 5)
                if is_conv:
                    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[t.dim() - 3]
                    child = conv(t.shape[1], t.shape[0], tuple(t.shape[2:]), bias=False)
                    child.weight = nn.Parameter(t.clone())
                else:
                    child = nn.Module()
                module.add_module(part, child)
            module = child
        if isinstance(module, nn.modules.conv._ConvNd):
            if leaf == "bias":
                module.bias = nn.Parameter(t.clone())
            continue
        module.register_buffer(leaf, t.clone())
    return root
