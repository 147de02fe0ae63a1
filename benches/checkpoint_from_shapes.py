"""A safetensors checkpoint with the conv weights of a shape list (benches/shapes/NAME.txt),
kaiming-normal (fan-in), for timing the whole command on networks cs-init has no builtin for:

    python3 benches/checkpoint_from_shapes.py convnext_tiny /tmp/convnext_tiny.safetensors
    cs-init /tmp/convnext_tiny.safetensors --iters 200

Needs numpy and safetensors.
"""
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

stem, out = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
tensors = {}
for line in (Path(__file__).parent / "shapes" / f"{stem}.txt").read_text().splitlines():
    if not line.strip() or line.startswith("#"):
        continue
    name, *dims = line.split()
    dims = [int(d) for d in dims]
    fan_in = int(np.prod(dims[1:]))
    tensors[name] = (rng.standard_normal(dims) * np.sqrt(2.0 / fan_in)).astype(np.float32)
save_file(tensors, out)
