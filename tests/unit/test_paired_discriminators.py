"""benchmarks/paired_discriminators.py times the categorical models' two discriminators as one baddbmm per layer;
its timings mean something only if the paired form computes the same losses and gradients, which it checks first."""

import pytest
import torch

from aae_tune.model.nets import mlp
from tests.helpers import load_benchmark

paired = load_benchmark("paired_discriminators")


@pytest.mark.parametrize(("code_dim", "classes"), [(3, 5), (7, 4), (6, 6)])
def test_the_benchmark_checks_its_numbers_then_prints_both_phases(code_dim, classes, capsys):
    argv = ["--hidden", "16", "--batch", "8", "--rounds", "1", "--steps", "1", "--code-dim", str(code_dim),
            "--classes", str(classes)]
    assert paired.main(argv) == 0
    rows = [line.split(" | ")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows == ["| phase", "| discriminator phase", "| generator phase", "| both"]


def test_a_paired_form_that_differs_is_caught():
    torch.manual_seed(0)
    d_z, d_y = mlp(3, [16, 16], 1, init_std=0.1), mlp(5, [16, 16], 1, init_std=0.1)
    layers = paired.stacked(d_z, d_y, width=5)
    codes = [(torch.randn(8, d), torch.randn(8, d)) for d in (3, 5)]
    paired.assert_same_numbers(d_z, d_y, layers, *codes, width=5)
    with torch.no_grad():
        layers[1][0][1, 0, 0] += 0.5  # one weight of D_y's second layer
    with pytest.raises(AssertionError):
        paired.assert_same_numbers(d_z, d_y, layers, *codes, width=5)
