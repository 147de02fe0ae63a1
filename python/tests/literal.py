"""The literal Convolutional Similarity (the paper's Equation 10), straight from its definition:
every entry of every full cross-correlation W[i,c1] (*) W[j,c2] of the pair set, squared and
summed. A port of the library's src/similarity/literal.rs, in torch so that autograd gives its
gradient. O(S^2 C^2 k^4): for small shapes only."""

import itertools

import torch


def includes(variant, i, c1, j, c2):
    adjacent = variant in ("adjacent", "adjacent-same-channel")
    same = variant in ("same-channel", "adjacent-same-channel")
    filters = (j == i + 1) if adjacent else (i < j)
    return filters and (not same or c1 == c2)


def literal(weight, variant="paper"):
    s, c = weight.shape[:2]
    k = (1,) * (5 - weight.dim()) + tuple(weight.shape[2:])
    kernels = s * c
    planes = weight.reshape(kernels, *k)
    flat = planes.reshape(kernels, -1)
    padded = planes
    for d, kd in enumerate(k):
        pad = torch.zeros_like(padded.narrow(d + 1, 0, 1)).repeat_interleave(kd - 1, dim=d + 1)
        padded = torch.cat([pad, padded, pad], dim=d + 1)
    mask = torch.tensor(
        [[float(includes(variant, a // c, a % c, b // c, b % c)) for b in range(kernels)] for a in range(kernels)],
        dtype=weight.dtype,
    )
    total = weight.new_zeros(())
    for shift in itertools.product(*[range(-(kd - 1), kd) for kd in k]):
        shifted = padded
        for d in range(3):
            shifted = shifted.narrow(d + 1, k[d] - 1 + shift[d], k[d])
        cross = flat @ shifted.reshape(kernels, -1).T
        total = total + (cross * cross * mask).sum()
    return total
