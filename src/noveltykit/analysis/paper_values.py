"""Published numbers to print beside ours, transcribed from the P-KDGAN paper's Table IV
(one-vs-rest AUROC, mean of three runs, on the original CIFAR-10 and MNIST). Keys: dataset name
as we report it -> column -> per-class values in label order."""
from __future__ import annotations

_CIFAR10 = {
    "OCSVM": [0.630, 0.440, 0.649, 0.487, 0.735, 0.500, 0.725, 0.533, 0.649, 0.508],
    "KDE": [0.658, 0.520, 0.657, 0.497, 0.727, 0.496, 0.758, 0.564, 0.680, 0.540],
    "VAE": [0.700, 0.386, 0.679, 0.535, 0.748, 0.523, 0.687, 0.493, 0.696, 0.386],
    "DSVDD": [0.617, 0.659, 0.508, 0.591, 0.609, 0.657, 0.677, 0.673, 0.759, 0.731],
    "OCGAN": [0.757, 0.531, 0.640, 0.620, 0.723, 0.620, 0.723, 0.575, 0.820, 0.554],
    "P-KDGAN teacher": [0.825, 0.744, 0.703, 0.605, 0.765, 0.652, 0.797, 0.723, 0.827, 0.735],
}
_MNIST = {
    "OCSVM": [0.988, 0.999, 0.902, 0.950, 0.955, 0.968, 0.978, 0.965, 0.853, 0.955],
    "KDE": [0.885, 0.996, 0.710, 0.693, 0.844, 0.776, 0.861, 0.884, 0.669, 0.825],
    "VAE": [0.997, 0.999, 0.936, 0.959, 0.973, 0.964, 0.993, 0.976, 0.923, 0.976],
    "DSVDD": [0.980, 0.997, 0.917, 0.919, 0.949, 0.885, 0.983, 0.946, 0.939, 0.965],
    "OCGAN": [0.998, 0.999, 0.942, 0.963, 0.975, 0.980, 0.991, 0.981, 0.939, 0.981],
    "P-KDGAN teacher": [0.996, 0.999, 0.969, 0.969, 0.970, 0.951, 0.992, 0.982, 0.965, 0.987],
}

# Fashion-MNIST appears only in Table V, as the teacher's mean over classes: no per-class values.
_FMNIST = {"P-KDGAN teacher": [None] * 10 + [0.9311]}

# One-vs-rest AUROC reported in P-KDGAN Table IV (and V); the JPEG copy is compared to the original.
# A list of 11 holds the published mean last, for a paper that gives no per-class values.
TABLE_IV = {"mnist": _MNIST, "cifar10": _CIFAR10, "cifar10-jpeg": _CIFAR10, "fashion-mnist": _FMNIST}


def paper_columns(dataset: str, protocol: str) -> dict[str, list[float]]:
    if protocol != "one-vs-rest":
        return {}
    return TABLE_IV.get(dataset, {})
