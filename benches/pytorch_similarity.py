"""PyTorch's fastest CPU formulation of L_CS, timed on the conv-weight shapes of one network.

Used by `cargo bench --bench architectures` for its PyTorch column; runnable alone:

    python3 benches/pytorch_similarity.py benches/shapes/resnet18.txt --iters 200

For every conv weight `W` `[S, C, k...]` (kaiming-normal, f32, as the bench draws them), it runs
`--iters` Adam steps (lr 1e-3) of the paper variant of L_CS in its linear-time form, each
autocorrelation computed as one grouped convolution of the S*C kernel planes with themselves
(design notes §4: the fastest of the formulations measured there):

    R = conv(W as 1 x (S*C) x k..., W as (S*C) x 1 x k..., padding k-1, groups S*C)
    R_i = sum_c R[i, c];  L = (<T, T> - sum_i <R_i, R_i>) / 2,  T = sum_i R_i

Layers run one after the other, each with its own Adam, like cs-init (layers are independent, so
this is the same work as one optimizer over all layers). `--warmup` iterations per layer run
first and are not timed (PyTorch's first iterations are 2-3x slower); when `--iters` is below 200
the bench scales the per-iteration time. Prints one JSON object: seconds per layer and in total.
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def similarity(w):
    s, c, *k = w.shape
    planes = s * c
    r = CONV[len(k)](
        w.reshape(1, planes, *k),
        w.reshape(planes, 1, *k),
        padding=[d - 1 for d in k],
        groups=planes,
    )
    r = r.reshape(s, c, -1).sum(1)
    t = r.sum(0)
    return 0.5 * ((t * t).sum() - (r * r).sum())


def read_shapes(path):
    shapes = []
    for line in open(path):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            shapes.append((fields[0], [int(x) for x in fields[1:]]))
    return shapes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("shapes")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    layers = []
    for name, dims in read_shapes(args.shapes):
        fan_out = dims[0] * math.prod(dims[2:])
        w = (torch.randn(dims) * math.sqrt(2.0 / fan_out)).requires_grad_()
        optimizer = torch.optim.Adam([w], lr=1e-3)

        def step():
            optimizer.zero_grad(set_to_none=True)
            similarity(w).backward()
            optimizer.step()

        for _ in range(args.warmup):
            step()
        start = time.perf_counter()
        for _ in range(args.iters):
            step()
        layers.append({"name": name, "shape": dims, "seconds": time.perf_counter() - start})
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "iters": args.iters,
                "seconds": sum(layer["seconds"] for layer in layers),
                "layers": layers,
            }
        )
    )


if __name__ == "__main__":
    main()
