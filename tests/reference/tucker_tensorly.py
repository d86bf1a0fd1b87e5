#!/usr/bin/env python3
"""Reference Tucker-2 and EVBMF values for bedside's `tucker` module.

Usage:
    python tests/reference/tucker_tensorly.py random OUT_DIR
        Writes the random kernels (numpy, fixed seeds) as OUT_DIR/NAME.npy and
        prints their names, one per line.
    python tests/reference/tucker_tensorly.py hooi KERNEL R_OUT,R_IN [KERNEL R_OUT,R_IN ...]
        KERNEL is FILE.npy or FILE.safetensors:TENSOR. Runs tensorly's
        partial_tucker(W, rank=[R_OUT, R_IN], modes=(0, 1), init='svd') on the
        kernel in float64 and prints a JSON list of {kernel, ranks, rel_error,
        sweeps, ms}; rel_error is ||W - W_hat|| / ||W|| of the reconstruction.
    python tests/reference/tucker_tensorly.py evbmf KERNEL [KERNEL ...]
        EVBMF rank and noise variance of both channel unfoldings of each kernel
        (JSON list of {kernel, ranks, noise_variances}).
    python tests/reference/tucker_tensorly.py evbmf-values L M S1,S2,...
        EVBMF on an L x M matrix with these singular values (JSON).

EVBMF here follows Nakajima's MATLAB VBMF.m (the problem scaled by the lower
bound of the noise variance before fminbnd; L > M transposed), with numpy's
SVD and scipy's bounded minimiser: the same published algorithm as bedside's
Rust, computed by other code. Requires numpy, scipy and tensorly 0.9.
"""

import json
import struct
import sys
import time

import numpy as np


def read_kernel(spec):
    if ".safetensors:" in spec:
        path, name = spec.rsplit(":", 1)
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            entry = header[name]
            assert entry["dtype"] == "F32", entry["dtype"]
            start, end = entry["data_offsets"]
            f.seek(8 + n + start)
            data = np.frombuffer(f.read(end - start), dtype="<f4")
            return data.reshape(entry["shape"])
    return np.load(spec)


RANDOM_KERNELS = {
    # name: (shape, seed)
    "conv3_16x8": ((16, 8, 3, 3, 3), 1),
    "conv3_32x32": ((32, 32, 3, 3, 3), 2),
    "pointwise_24x12": ((24, 12, 1, 1, 1), 3),
    "conv2_20x10": ((20, 10, 3, 3), 4),
}


def random_kernels(out_dir):
    import os

    os.makedirs(out_dir, exist_ok=True)
    for name, (shape, seed) in RANDOM_KERNELS.items():
        w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
        np.save(f"{out_dir}/{name}.npy", w)
        print(name)


def hooi(pairs):
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("numpy")
    rows = []
    for spec, ranks in pairs:
        w = read_kernel(spec).astype(np.float64)
        rank = [int(r) for r in ranks.split(",")]
        started = time.perf_counter()
        (core, factors), errors = partial_tucker(w, rank=rank, modes=(0, 1), init="svd")
        ms = (time.perf_counter() - started) * 1e3
        w_hat = tl.tenalg.multi_mode_dot(core, factors, modes=(0, 1))
        rel = float(np.linalg.norm(w - w_hat) / np.linalg.norm(w))
        rows.append({"kernel": spec, "ranks": rank, "rel_error": rel, "sweeps": len(errors), "ms": ms})
    print(json.dumps(rows))


def evbmf_values(s, L, M):
    """Rank and noise variance of an L x M matrix with singular values s."""
    from scipy.optimize import minimize_scalar

    if L > M:
        L, M = M, L
    s = np.sort(np.asarray(s, dtype=np.float64))[::-1]
    # Values at rounding level (dead channels) count as zeros: numpy's
    # matrix_rank tolerance, as bedside uses.
    s = s[s > s[0] * max(L, M) * np.finfo(np.float64).eps]
    H = len(s)
    alpha = L / M
    tauubar = 2.5129 * np.sqrt(alpha)
    xubar = (1 + tauubar) * (1 + alpha / tauubar)
    k = min(int(np.ceil(L / (1 + alpha))) - 1, H - 1)
    upper = np.sum(s**2) / (L * M)
    lower = max(s[k] ** 2 / (M * xubar), np.mean(s[k:] ** 2) / M)
    if lower >= upper:
        sigma2 = upper
    else:
        scale = 1.0 / lower
        s2 = s**2 * scale

        def objective(sigma2):
            x = s2 / (M * sigma2)
            z1 = x[x > xubar]
            z2 = x[x <= xubar]
            tau = 0.5 * (z1 - (1 + alpha) + np.sqrt((z1 - (1 + alpha)) ** 2 - 4 * alpha))
            term1 = np.sum(z2 - np.log(z2))
            term2 = np.sum(z1 - tau + np.log((tau + 1) / z1) + alpha * np.log(tau / alpha + 1))
            return term1 + term2 + (L - H) * np.log(sigma2)

        res = minimize_scalar(objective, bounds=[1.0, upper * scale], method="Bounded")
        sigma2 = res.x / scale
    threshold = np.sqrt(M * sigma2 * xubar)
    return int(np.sum(s > threshold)), float(sigma2)


def evbmf_kernels(specs):
    rows = []
    for spec in specs:
        w = read_kernel(spec).astype(np.float64)
        out, inp = w.shape[0], w.shape[1]
        u0 = w.reshape(out, -1)
        u1 = np.moveaxis(w, 1, 0).reshape(inp, -1)
        ranks, sigmas = [], []
        for u in (u0, u1):
            r, s2 = evbmf_values(np.linalg.svd(u, compute_uv=False), *u.shape)
            ranks.append(r)
            sigmas.append(s2)
        rows.append({"kernel": spec, "ranks": ranks, "noise_variances": sigmas})
    print(json.dumps(rows))


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "random":
        random_kernels(args[0])
    elif mode == "hooi":
        hooi(list(zip(args[0::2], args[1::2])))
    elif mode == "evbmf":
        evbmf_kernels(args)
    elif mode == "evbmf-values":
        r, s2 = evbmf_values([float(v) for v in args[2].split(",")], int(args[0]), int(args[1]))
        print(json.dumps({"rank": r, "noise_variance": s2}))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
