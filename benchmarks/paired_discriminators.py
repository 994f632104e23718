"""Would one batched GEMM per layer for the categorical models' two discriminators (D_z on the style code, D_y on
the class probabilities) make their step faster on this CPU? Times both regularization phases as the model runs
them (``discriminator_bce`` / ``generator_bce`` on each D) against the same weights stacked into (2, in, out)
tensors and run with ``torch.baddbmm`` (the first layers zero-padded to the wider input, which changes no
output), after checking that both give the same losses and gradients. Medians of interleaved rounds.

    python benchmarks/paired_discriminators.py --code-dim 10 --classes 10 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from aae_tune.model.aae import discriminator_bce, generator_bce  # noqa: E402
from aae_tune.model.nets import mlp  # noqa: E402


def pad_to(t: torch.Tensor, width: int) -> torch.Tensor:
    """(n, d) -> (n, width), zeros on the right: the padded inputs meet zero rows of the stacked first layer."""
    return F.pad(t, (0, width - t.shape[1]))


def paired_inputs(z: torch.Tensor, y: torch.Tensor, width: int) -> torch.Tensor:
    """D_z's input (n, code_dim) and D_y's (n, K) -> (2, n, width), padded."""
    return torch.stack([pad_to(z, width), pad_to(y, width)])


def linears(d: torch.nn.Sequential) -> list[torch.nn.Linear]:
    return [m for m in d if isinstance(m, torch.nn.Linear)]


def stacked(d_z: torch.nn.Sequential, d_y: torch.nn.Sequential, width: int) -> list[tuple[torch.Tensor, ...]]:
    """Per linear layer (weight (2, in, out), bias (2, 1, out)), D_z first; the first layer's rows zero-padded to
    ``width`` inputs for both Ds."""
    layers = []
    for lz, ly in zip(linears(d_z), linears(d_y), strict=True):
        rows = width if not layers else lz.in_features
        weight = torch.stack([F.pad(lin.weight.detach().t(), (0, 0, 0, rows - lin.in_features)) for lin in (lz, ly)])
        bias = torch.stack([lz.bias.detach(), ly.bias.detach()]).unsqueeze(1)
        layers.append((weight.contiguous().requires_grad_(), bias.contiguous().requires_grad_()))
    return layers


def paired_logits(layers, codes: torch.Tensor) -> torch.Tensor:
    """(2, N, width) inputs -> (2, N, 1) logits of D_z and D_y."""
    h = codes
    for k, (weight, bias) in enumerate(layers):
        h = torch.baddbmm(bias, h, weight)
        if k < len(layers) - 1:
            h = torch.relu(h)
    return h


def paired_disc_loss(layers, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    n = real.shape[1]
    logits = paired_logits(layers, torch.cat([real, fake], 1))  # (2, 2n, 1)
    target = torch.cat([torch.ones(n, 1), torch.zeros(n, 1)]).expand(2, -1, -1)
    return 4 * F.binary_cross_entropy_with_logits(logits, target)  # discriminator_bce: 2 x mean over 2n, per D


def paired_gen_loss(layers, fake: torch.Tensor) -> torch.Tensor:
    logits = paired_logits(layers, fake)  # (2, n, 1)
    return 2 * F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))  # generator_bce: mean, per D


def assert_same_numbers(d_z, d_y, layers, z: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor],
                        width: int) -> None:
    """The paired forward gives the two Ds' losses and every gradient: the discriminator phase's weight and bias
    gradients (each D's first layer in its unpadded rows) and the generator phase's gradients of the codes."""
    (z_real, z_fake), (y_real, y_fake) = z, y
    real = paired_inputs(z_real, y_real, width)
    fake = paired_inputs(z_fake, y_fake, width).detach().requires_grad_()
    params = [*d_z.parameters(), *d_y.parameters()]
    separate = discriminator_bce(d_z, z_real, z_fake)[0] + discriminator_bce(d_y, y_real, y_fake)[0]
    paired = paired_disc_loss(layers, real, fake.detach())
    torch.testing.assert_close(paired, separate, rtol=1e-5, atol=1e-7)
    expected = torch.autograd.grad(separate, params)
    got = torch.autograd.grad(paired, [t for layer in layers for t in layer])
    half = len(params) // 2  # expected: D_z's (weight, bias) per layer, then D_y's
    for k, (lz, ly) in enumerate(zip(linears(d_z), linears(d_y), strict=True)):
        weight, bias = got[2 * k], got[2 * k + 1]  # (2, in, out), (2, 1, out)
        torch.testing.assert_close(weight[0][: lz.in_features], expected[2 * k].t(), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(weight[1][: ly.in_features], expected[half + 2 * k].t(), rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(bias[:, 0], torch.stack([expected[2 * k + 1], expected[half + 2 * k + 1]]),
                                   rtol=1e-4, atol=1e-7)
    z_fake, y_fake = (t.detach().requires_grad_() for t in (z_fake, y_fake))
    separate = generator_bce(d_z(z_fake)) + generator_bce(d_y(y_fake))
    paired = paired_gen_loss(layers, fake)
    torch.testing.assert_close(paired, separate, rtol=1e-5, atol=1e-7)
    gz, gy = torch.autograd.grad(separate, [z_fake, y_fake])
    (got,) = torch.autograd.grad(paired, [fake])
    torch.testing.assert_close(got[0][:, : gz.shape[1]], gz, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(got[1][:, : gy.shape[1]], gy, rtol=1e-4, atol=1e-7)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code-dim", type=int, default=10)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--hidden", type=int, default=1000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    width, n = max(args.code_dim, args.classes), args.batch
    d_z = mlp(args.code_dim, [args.hidden] * 2, 1, init_std=0.01)
    d_y = mlp(args.classes, [args.hidden] * 2, 1, init_std=0.01)
    layers = stacked(d_z, d_y, width)
    z_real, z_fake = torch.randn(n, args.code_dim), torch.randn(n, args.code_dim, requires_grad=True)
    y_real, y_fake = torch.randn(n, args.classes), torch.randn(n, args.classes, requires_grad=True)
    assert_same_numbers(d_z, d_y, layers, (z_real, z_fake.detach()), (y_real, y_fake.detach()), width)

    real = paired_inputs(z_real, y_real, width)
    fake = paired_inputs(z_fake, y_fake, width).detach().requires_grad_()

    def separate_disc():
        (discriminator_bce(d_z, z_real, z_fake.detach())[0] + discriminator_bce(d_y, y_real, y_fake.detach())[0]) \
            .backward(inputs=[*d_z.parameters(), *d_y.parameters()])

    def paired_disc():
        paired_disc_loss(layers, real, fake.detach()).backward(inputs=[t for layer in layers for t in layer])

    def separate_gen():
        (generator_bce(d_z(z_fake)) + generator_bce(d_y(y_fake))).backward(inputs=[z_fake, y_fake])

    def paired_gen():
        paired_gen_loss(layers, fake).backward(inputs=[fake])

    timings: dict[str, list[float]] = {}
    cases = {"discriminator phase": (separate_disc, paired_disc), "generator phase": (separate_gen, paired_gen)}
    for _ in range(args.rounds):
        for phase, pair in cases.items():
            for label, fn in zip(("separate", "paired"), pair, strict=True):
                start = time.perf_counter()
                for _ in range(args.steps):
                    fn()
                timings.setdefault(f"{phase}, {label}", []).append((time.perf_counter() - start) / args.steps * 1e3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, D_z {args.code_dim} -> {args.hidden} x 2, "
          f"D_y {args.classes} -> {args.hidden} x 2, batch {n}; median of {args.rounds} rounds x {args.steps} steps; "
          "same losses and gradients checked")
    print("| phase | two Ds, ms | one baddbmm per layer, ms | speed-up |\n|---|---:|---:|---:|")
    total = [0.0, 0.0]
    for phase in cases:
        sep, pair = (statistics.median(timings[f"{phase}, {label}"]) for label in ("separate", "paired"))
        total = [total[0] + sep, total[1] + pair]
        print(f"| {phase} | {sep:.2f} | {pair:.2f} | {sep / pair:.2f}× |")
    print(f"| both | {total[0]:.2f} | {total[1]:.2f} | {total[0] / total[1]:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
