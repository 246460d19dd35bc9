"""Recompute the golden PyTorch reference values that three tests compare against.

torch is not a test dependency. Where a test checks our code against PyTorch, it
reads the numbers PyTorch gave from a small file here, computed once by this script:

- glimpse_sampler_pytorch.npz: `affine_grid` + `grid_sample` (bilinear, zeros
  padding, align_corners=True) values and gradients, with their inputs, for
  tests/layers/test_glimpse_sampler.py::test_matches_pytorch_values_and_gradients.
- one_cycle_pytorch.npz: `OneCycleLR` rates, for
  tests/test_schedules.py::test_one_cycle_matches_pytorch; with the official code's
  `pct_start=0.2` and `cycle_momentum=True`, the rates and momenta, and the weights
  that `torch.optim.SGD(momentum, weight_decay)` under that schedule steps through on a
  quadratic, for tests/test_schedules.py::test_official_one_cycle_matches_pytorch and
  tests/test_recipe_options.py::test_coupled_sgd_with_cycled_momentum_matches_torch.
- resnet18_pytorch.npz: the output of a ResNet-18 in torchvision's layout, for
  tests/backbones/test_backbones.py::test_resnet18_matches_pytorch. Its 11M weights
  are not stored: `resnet18_parameters(seed)` draws them with NumPy from the stored
  seed, here and in the test alike, and a checksum of the draw is stored so that a
  change in NumPy's random stream is reported as such.

The stored files were made with torch 2.13.0 (CPU build, "2.13.0+cpu") and
NumPy 2.4.6; each file records the versions that made it. To regenerate them, from
the repository root:

    pip install torch==2.13.0
    python tests/data/torch_reference.py            # every file
    python tests/data/torch_reference.py one_cycle_pytorch.npz   # or only these

The script imports only NumPy and torch; it must not import TensorFlow (importing
torch after TensorFlow can crash). pytest does not collect it (its name does not
match test_*.py); test_backbones.py imports it for `resnet18_parameters`, which
needs only NumPy.
"""

import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# (image shape NHWC, glimpse size): the cases of
# test_matches_pytorch_values_and_gradients.
SAMPLER_CASES = (
    ((3, 17, 23, 2), (5, 7)),
    ((2, 64, 64, 3), (32, 32)),
    ((2, 9, 9, 1), (1, 4)),
)
ONE_CYCLE_PEAK = 0.1
ONE_CYCLE_TOTALS = (10, 101)
# The official code's OneCycleLR (pct_start=0.2, cycle_momentum=True) with SGD
# momentum 0.9 and coupled weight decay, stepped on the quadratic 0.5 * sum(c * w**2).
OFFICIAL_PCT_START = 0.2
OFFICIAL_TOTAL = 30
OFFICIAL_WEIGHT_DECAY = 0.05

RESNET18_WEIGHT_SEED = 0
RESNET18_IMAGE_SEED = 1
RESNET18_IMAGE_SHAPE = (2, 64, 64, 3)


def quadratic_problem():
    """(initial weights, curvatures c) of the SGD trajectory fixture."""
    rng = np.random.default_rng(3)
    return rng.standard_normal(6).astype(np.float64), rng.uniform(0.5, 4.0, 6)


def sampler_key(image_shape, size):
    """Key prefix of one sampler case, e.g. "3x17x23x2_5x7"."""
    return "x".join(map(str, image_shape)) + "_" + "x".join(map(str, size))


def sampler_inputs(image_shape, size):
    """Images (NHWC), params and the upstream gradient (NCHW, torch's output layout)."""
    rng = np.random.default_rng(1)
    images = rng.random(image_shape, dtype=np.float32)
    batch = image_shape[0]
    # Scales and offsets that reach past the border, so zero padding is exercised.
    params = np.stack(
        [
            rng.uniform(0.2, 1.2, batch),
            rng.uniform(-0.9, 0.9, batch),
            rng.uniform(-0.9, 0.9, batch),
        ],
        axis=1,
    ).astype("float32")
    upstream = rng.standard_normal((batch, image_shape[3], *size)).astype("float32")
    return images, params, upstream


def resnet18_layers():
    """(torch module name, kind, shape) of every conv and BN of a ResNet-18 without fc,
    in the order of torch's `named_modules()`. Conv shapes are OIHW; BN shapes are
    the channel count."""
    layers = [("conv1", "conv", (64, 3, 7, 7)), ("bn1", "bn", (64,))]
    inplanes = 64
    for stage, planes in enumerate((64, 128, 256, 512), 1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            cin = inplanes if block == 0 else planes
            layers += [
                (f"{prefix}.conv1", "conv", (planes, cin, 3, 3)),
                (f"{prefix}.bn1", "bn", (planes,)),
                (f"{prefix}.conv2", "conv", (planes, planes, 3, 3)),
                (f"{prefix}.bn2", "bn", (planes,)),
            ]
            if block == 0 and cin != planes:
                layers += [
                    (f"{prefix}.downsample.0", "conv", (planes, cin, 1, 1)),
                    (f"{prefix}.downsample.1", "bn", (planes,)),
                ]
        inplanes = planes
    return layers


def resnet18_parameters(seed):
    """Deterministic ResNet-18 weights from NumPy alone, as a list of
    (torch module name, arrays): a conv's OIHW weight (He normal, fan out, as
    torchvision), or a BN's [gamma, beta, running mean, running variance] (random,
    so that the BNs are not the identity)."""
    rng = np.random.default_rng(seed)
    parameters = []
    for name, kind, shape in resnet18_layers():
        if kind == "conv":
            std = np.sqrt(2.0 / (shape[0] * shape[2] * shape[3]))
            weight = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
            parameters.append((name, [weight]))
        else:
            (channels,) = shape
            parameters.append(
                (
                    name,
                    [
                        rng.uniform(0.5, 1.5, channels).astype("float32"),
                        rng.normal(0.0, 0.1, channels).astype("float32"),
                        rng.normal(0.0, 0.1, channels).astype("float32"),
                        rng.uniform(0.5, 1.5, channels).astype("float32"),
                    ],
                )
            )
    return parameters


def resnet18_images(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=RESNET18_IMAGE_SHAPE).astype("float32")


def resnet18_checksum(parameters, images):
    """Sums of the drawn weights and images, to tell a changed random stream apart
    from a wrong network."""
    weights = sum(
        float(np.sum(array, dtype=np.float64))
        for _, arrays in parameters
        for array in arrays
    )
    return np.array([weights, float(np.sum(images, dtype=np.float64))])


# --- Everything below needs torch. ---------------------------------------------------


def _versions(torch):
    return {
        "torch_version": np.array(torch.__version__),
        "numpy_version": np.array(np.__version__),
    }


def _sampler_fixture(torch):
    arrays = {}
    for image_shape, size in SAMPLER_CASES:
        images, params, upstream = sampler_inputs(image_shape, size)
        images_t = torch.tensor(images.transpose(0, 3, 1, 2), requires_grad=True)
        params_t = torch.tensor(params, requires_grad=True)
        zero = torch.zeros_like(params_t[:, 0])
        theta = torch.stack(
            [
                torch.stack([params_t[:, 0], zero, params_t[:, 1]], 1),
                torch.stack([zero, params_t[:, 0], params_t[:, 2]], 1),
            ],
            1,
        )
        with warnings.catch_warnings():
            # The 1x4 case is a unit-size grid, on purpose (torch warns about those).
            warnings.filterwarnings("ignore", "Since version 1.3.0, affine_grid")
            grid = torch.nn.functional.affine_grid(
                theta, (images_t.shape[0], images_t.shape[1], *size), align_corners=True
            )
        out = torch.nn.functional.grid_sample(
            images_t, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        (out * torch.tensor(upstream)).sum().backward()
        key = sampler_key(image_shape, size)
        # Everything in Keras' NHWC layout.
        arrays[f"{key}_images"] = images
        arrays[f"{key}_params"] = params
        arrays[f"{key}_upstream"] = upstream.transpose(0, 2, 3, 1)
        arrays[f"{key}_out"] = out.detach().numpy().transpose(0, 2, 3, 1)
        arrays[f"{key}_grad_images"] = images_t.grad.numpy().transpose(0, 2, 3, 1)
        arrays[f"{key}_grad_params"] = params_t.grad.numpy()
    return arrays


def _one_cycle_values(torch, total, momentum=0.0, **one_cycle):
    """The rate and the momentum (arrays of `total`) that OneCycleLR(**one_cycle) sets
    on SGD at each step."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=ONE_CYCLE_PEAK, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=ONE_CYCLE_PEAK, total_steps=total, **one_cycle
    )
    values = []
    for _ in range(total):
        group = optimizer.param_groups[0]
        values.append((group["lr"], group["momentum"]))
        optimizer.step()
        scheduler.step()
    return np.array(values, dtype=np.float64).T


def _one_cycle_fixture(torch):
    arrays = {"peak": np.array(ONE_CYCLE_PEAK)}
    for total in ONE_CYCLE_TOTALS:
        arrays[f"rates_{total}"], _ = _one_cycle_values(torch, total, cycle_momentum=False)
        rates, momenta = _one_cycle_values(
            torch, total, momentum=0.9, pct_start=OFFICIAL_PCT_START
        )
        arrays[f"official_rates_{total}"] = rates
        arrays[f"official_momenta_{total}"] = momenta
    initial, curvature = quadratic_problem()
    weights = torch.nn.Parameter(torch.tensor(initial))
    optimizer = torch.optim.SGD(
        [weights], lr=ONE_CYCLE_PEAK, momentum=0.9, weight_decay=OFFICIAL_WEIGHT_DECAY
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=ONE_CYCLE_PEAK, total_steps=OFFICIAL_TOTAL, pct_start=OFFICIAL_PCT_START
    )
    curvature_t = torch.tensor(curvature)
    trajectory = []
    for _ in range(OFFICIAL_TOTAL):
        optimizer.zero_grad()
        (0.5 * (curvature_t * weights**2).sum()).backward()
        optimizer.step()
        scheduler.step()
        trajectory.append(weights.detach().numpy().copy())
    arrays["official_sgd_weights"] = np.stack(trajectory)
    return arrays


def _torch_resnet18(torch):
    """A plain PyTorch ResNet-18 (torchvision's layout), without the fc."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(
                    nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for stage, planes in enumerate((64, 128, 256, 512), 1):
                stride = 1 if stage == 1 else 2
                blocks = [
                    BasicBlock(inplanes, planes, stride),
                    BasicBlock(planes, planes, 1),
                ]
                setattr(self, f"layer{stage}", nn.Sequential(*blocks))
                inplanes = planes

        def forward(self, x):
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
            for stage in range(1, 5):
                x = getattr(self, f"layer{stage}")(x)
            return x.mean(dim=(2, 3))

    return ResNet18()


def _resnet18_fixture(torch):
    model = _torch_resnet18(torch).eval()
    modules = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d))
    ]
    parameters = resnet18_parameters(RESNET18_WEIGHT_SEED)
    # The NumPy-only layer list must be torch's, name for name and shape for shape.
    assert [name for name, _ in modules] == [name for name, _ in parameters]
    with torch.no_grad():
        for (name, module), (_, arrays) in zip(modules, parameters):
            if isinstance(module, torch.nn.Conv2d):
                (weight,) = arrays
                assert tuple(module.weight.shape) == weight.shape, name
                module.weight.copy_(torch.from_numpy(weight))
            else:
                gamma, beta, mean, variance = arrays
                assert tuple(module.weight.shape) == gamma.shape, name
                module.weight.copy_(torch.from_numpy(gamma))
                module.bias.copy_(torch.from_numpy(beta))
                module.running_mean.copy_(torch.from_numpy(mean))
                module.running_var.copy_(torch.from_numpy(variance))
    # 20 convs (17 + 3 downsample) and as many BNs.
    assert len(modules) == 40
    images = resnet18_images(RESNET18_IMAGE_SEED)
    with torch.no_grad():
        output = model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()
    return {
        "weight_seed": np.array(RESNET18_WEIGHT_SEED),
        "image_seed": np.array(RESNET18_IMAGE_SEED),
        "checksum": resnet18_checksum(parameters, images),
        "output": output,
    }


def main():
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "Run this script alone: torch must not share a process with TensorFlow."
        )
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)  # one summation order, whatever the machine
    fixtures = [
        ("glimpse_sampler_pytorch.npz", _sampler_fixture),
        ("one_cycle_pytorch.npz", _one_cycle_fixture),
        ("resnet18_pytorch.npz", _resnet18_fixture),
    ]
    wanted = sys.argv[1:] or [filename for filename, _ in fixtures]
    unknown = sorted(set(wanted) - {filename for filename, _ in fixtures})
    if unknown:
        raise SystemExit(f"Unknown files {unknown}; expected some of {[f for f, _ in fixtures]}")
    for filename, build in fixtures:
        if filename not in wanted:
            continue
        path = os.path.join(HERE, filename)
        np.savez_compressed(path, **build(torch), **_versions(torch))
        print(f"{path}: {os.path.getsize(path):,} bytes")


if __name__ == "__main__":
    main()
