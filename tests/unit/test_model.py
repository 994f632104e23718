"""Networks, encoders and the phases of one AAE training step."""

import pytest
import torch
from torch import nn

from aae_tune.config import ExperimentConfig
from aae_tune.model.aae import Batch, discriminator_bce
from aae_tune.model.nets import Encoder, SeededDropout, mlp
from aae_tune.model.registry import build_model


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


def test_appendix_a1_architecture_and_init():
    model = build_model(ExperimentConfig())
    assert linear_shapes(model.encoder) == [(784, 1000), (1000, 1000), (1000, 8)]
    assert linear_shapes(model.decoder) == [(8, 1000), (1000, 1000), (1000, 784)]
    assert linear_shapes(model.discriminator) == [(8, 1000), (1000, 1000), (1000, 1)]
    assert isinstance(model.decoder[-1], nn.Sigmoid)
    assert not isinstance(model.encoder.net[-1], nn.ReLU)  # linear code layer
    w = model.encoder.net[2].weight.detach()
    assert abs(w.std().item() - 0.01) < 2e-4 and abs(w.mean().item()) < 1e-4
    assert torch.all(model.encoder.net[2].bias == 0)


def test_linear_decoder_output_option():
    model = build_model(ExperimentConfig.from_dict({"net": {"output": "linear"}}))
    assert isinstance(model.decoder[-1], nn.Linear)


def test_mlp_with_batch_norm():
    net = mlp(5, [7], 3, batch_norm=True)
    assert any(isinstance(m, nn.BatchNorm1d) for m in net)
    assert net(torch.randn(4, 5)).shape == (4, 3)


def test_deterministic_encoder_is_a_function_of_x():
    enc = Encoder("deterministic", 20, [16], 3, init_std=0.3)
    x = torch.randn(4, 20)
    assert torch.equal(enc(x), enc(x)) and enc(x).shape == (4, 3)


def test_gaussian_encoder_reparameterises():
    enc = Encoder("gaussian", 20, [16], 3, init_std=0.3)
    x = torch.randn(4000, 20)
    g = torch.Generator().manual_seed(0)
    z1, z2 = enc(x, g), enc(x, g)
    assert z1.shape == (4000, 3) and not torch.equal(z1, z2)
    mu, logvar = enc.net(x).chunk(2, dim=1)
    # z - mu is N(0, sigma^2): standardised residuals have unit variance
    resid = ((z1 - mu) / (0.5 * logvar).exp()).detach()
    assert abs(resid.std().item() - 1) < 0.03
    assert torch.equal(enc.mean_code(x), mu)
    enc(x, g).sum().backward()  # gradients reach the layer that outputs (mu, log sigma^2)
    assert enc.net[-1].weight.grad.abs().sum() > 0


def test_universal_encoder_uses_noise_and_input():
    enc = Encoder("universal", 20, [16], 3, noise_dim=5, init_std=0.3)
    assert linear_shapes(enc)[0] == (25, 16)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 20)
    assert not torch.equal(enc(x, g), enc(x, g))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert not torch.equal(enc(x, g1), enc(x + 1, g2))


def test_input_corruption_rates():
    cfg = ExperimentConfig.from_dict({"input_dropout": 0.2, "input_noise_std": 0.0})
    model = build_model(cfg)
    x = torch.ones(100, 784)
    out = model.corrupt(x, torch.Generator().manual_seed(0))
    assert abs((out == 0).float().mean().item() - 0.2) < 0.01
    assert torch.allclose(out.mean(), torch.tensor(1.0), atol=0.01)  # inverted dropout keeps the mean
    noisy = build_model(cfg.replace(input_dropout=0.0, input_noise_std=0.3)).corrupt(x, torch.Generator())
    assert abs((noisy - x).std().item() - 0.3) < 0.01


@pytest.mark.parametrize("encoder", ["deterministic", "gaussian", "universal"])
def test_each_phase_moves_only_its_own_parameters(encoder, tiny_config):
    model = build_model(tiny_config.replace(encoder=encoder))
    batch = Batch(torch.rand(32, 784), torch.randint(10, (32,)))
    g = torch.Generator().manual_seed(0)
    owners = {"reconstruction": {"encoder", "decoder"}, "discriminator": {"discriminator"}, "generator": {"encoder"}}
    for phase in model.phases():
        model.zero_grad(set_to_none=True)
        loss, metrics = phase.loss(batch, g)
        assert loss.ndim == 0 and torch.isfinite(loss) and metrics
        loss.backward(inputs=phase.parameters())
        touched = {name.split(".")[0] for name, p in model.named_parameters() if p.grad is not None}
        assert touched == owners[phase.name], phase.name


def test_discriminator_phase_learns_to_separate(tiny_config):
    """A few discriminator steps on fixed codes push its accuracy up: the adversarial signal is wired right."""
    cfg = tiny_config.replace(prior=tiny_config.prior.__class__(std=5.0))
    model = build_model(cfg)
    phase = model.phases()[1]
    opt = torch.optim.SGD(phase.parameters(), lr=0.1, momentum=0.5)
    batch, g = Batch(torch.rand(200, 784)), torch.Generator().manual_seed(0)
    accs = []
    for _ in range(30):
        opt.zero_grad()
        loss, m = phase.loss(batch, g)
        loss.backward()
        opt.step()
        accs.append(m["disc_accuracy"].item())
    assert sum(accs[-10:]) / 10 > 0.9 > accs[0]


def test_samples_are_images(tiny_config):
    model = build_model(tiny_config)
    x = model.sample(16, torch.Generator().manual_seed(0))
    assert x.shape == (16, 784) and x.min() >= 0 and x.max() <= 1


def batch_norm_widths(module: nn.Module) -> list[int]:
    return [m.num_features for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


def test_batch_norm_placement_follows_appendix_a():
    small = {"net": {"hidden": [16, 16], "disc_hidden": [8]}, "code_dim": 5, "num_classes": 30}
    encoder_only = build_model(ExperimentConfig.from_dict({**small, "model": "clustering",
                                                           "net": {**small["net"], "batch_norm": "encoder"}}))
    # A.3: every encoder layer, the q(y|x) (30) and q(z|x) (5) output layers included; nothing else
    assert batch_norm_widths(encoder_only.encoder) == [16, 16, 30, 5]
    assert batch_norm_widths(encoder_only.decoder) == [] and batch_norm_widths(encoder_only.discriminator) == []
    whole = build_model(ExperimentConfig.from_dict({**small, "model": "semisupervised", "num_classes": 10,
                                                    "net": {**small["net"], "batch_norm": "autoencoder",
                                                            "output": "linear"}}))
    # A.2.2: and every decoder layer, its (linear) output layer included
    assert batch_norm_widths(whole.decoder) == [16, 16, 784]
    assert batch_norm_widths(whole.discriminator_y) == []
    likelihood = build_model(ExperimentConfig.from_dict({**small, "net": {**small["net"], "batch_norm": "encoder"}}))
    assert batch_norm_widths(likelihood.encoder) == [16, 16, 5]


def test_reconstruction_costs():
    x = torch.rand(6, 784)
    x_hat = torch.rand(6, 784).clamp(0.01, 0.99)
    squared = (x_hat - x).pow(2).sum(1).mean()
    costs = {kind: build_model(ExperimentConfig(recon_cost=kind)).reconstruction_cost(x_hat, x)
             for kind in ("squared", "half_squared", "bce")}
    torch.testing.assert_close(costs["squared"], squared)
    torch.testing.assert_close(costs["half_squared"], 0.5 * squared)
    bce = -(x * x_hat.log() + (1 - x) * (1 - x_hat).log()).sum(1).mean()
    torch.testing.assert_close(costs["bce"], bce, rtol=1e-5, atol=1e-4)
    with pytest.raises(Exception, match="bce needs a sigmoid"):
        ExperimentConfig.from_dict({"recon_cost": "bce", "net": {"output": "linear"}})


def test_bce_gradient_stays_finite_where_the_sigmoid_saturates():
    # fp32 sigmoid of +-30 is exactly 1 / ~1e-13: log(1 - 1) = -inf, whose naive gradient is NaN
    model = build_model(ExperimentConfig(recon_cost="bce"))
    logits = torch.tensor([[30.0, -30.0, 3.0]], requires_grad=True)
    cost = model.reconstruction_cost(torch.sigmoid(logits), torch.tensor([[0.0, 1.0, 0.5]]))
    cost.backward()
    assert torch.isfinite(cost) and torch.isfinite(logits.grad).all()
    assert logits.grad[0, 1] < 0  # the wrongly saturated pixel still gets pushed the right way
    nan_cost = model.reconstruction_cost(torch.tensor([[float("nan"), 0.5, 0.5]]), torch.zeros(1, 3))
    assert torch.isnan(nan_cost)  # a diverged decoder reaches the trainer's non-finite check


def test_hidden_dropout_draws_its_masks_from_the_trainers_generator():
    model = build_model(ExperimentConfig.from_dict({"hidden_dropout": 0.5,
                                                 "net": {"hidden": [64, 64], "disc_hidden": [8]}}))
    x = torch.rand(4, 784)

    def codes(seed: int) -> torch.Tensor:
        model.use_generator(torch.Generator().manual_seed(seed))
        return model.encoder(x)

    torch.testing.assert_close(codes(1), codes(1))  # same generator state, same masks
    assert not torch.allclose(codes(1), codes(2))
    model.eval()  # no dropout at evaluation time
    torch.testing.assert_close(model.encoder(x), model.encoder(x))


def sgd_step(phases: list, batch: Batch, g: torch.Generator, lr: float = 0.05) -> None:
    """One mini-batch as the trainer runs it: the phases in order, each stepping only its own parameters."""
    for phase in phases:
        params = phase.parameters()
        loss, _ = phase.loss(batch, g)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, grad in zip(params, grads, strict=True):
                p -= lr * grad


@pytest.mark.parametrize(("model_name", "forwards"), [("likelihood", 2), ("clustering", 2), ("semisupervised", 3)])
def test_one_encoder_forward_serves_both_regularization_steps(model_name, forwards, tiny_config):
    """reconstruction, then one forward for discriminator + generator, then (semi-supervised) the labeled batch."""
    torch.manual_seed(0)
    model = build_model(tiny_config.replace(model=model_name, num_classes=10, input_noise_std=0.3))
    calls = []
    model.encoder.register_forward_hook(lambda *_: calls.append(1))
    batch = Batch(torch.rand(32, 784), None, torch.rand(10, 784), torch.arange(10))
    sgd_step(model.phases(), batch, torch.Generator().manual_seed(0))
    assert len(calls) == forwards
    assert batch.shared == {}  # the generator step dropped the codes: nothing is carried into another step


@pytest.mark.parametrize("model_name", ["likelihood", "clustering"])
def test_shared_codes_give_the_generator_the_gradient_of_a_fresh_forward(model_name, tiny_config):
    """After D's step, the generator's gradient through the codes kept from D's step equals the one through codes
    computed again (no input corruption, so both forwards see the same input; only D moved in between)."""
    torch.manual_seed(0)
    model = build_model(tiny_config.replace(model=model_name, num_classes=10))
    x, g = torch.rand(32, 784), torch.Generator().manual_seed(0)
    shared, fresh = Batch(x), Batch(x)
    reconstruction, discriminator, generator = model.phases()[:3]
    sgd_step([reconstruction, discriminator], shared, g, lr=0.5)
    assert "codes" in shared.shared
    kept = torch.autograd.grad(generator.loss(shared, g)[0], generator.parameters())
    again = torch.autograd.grad(generator.loss(fresh, g)[0], generator.parameters())
    for a, b in zip(kept, again, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("model_name", ["likelihood", "conditioned", "semisupervised", "dimred"])
def test_one_stacked_discriminator_forward_equals_two(model_name, tiny_config):
    """discriminator_bce judges prior samples and codes in one (2B, d) forward: the same loss and gradient as two
    forwards, which holds because no discriminator has a layer that looks across the batch."""
    torch.manual_seed(0)
    model = build_model(tiny_config.replace(model=model_name, num_classes=10, hidden_dropout=0.2))
    discriminators = [m for name, m in model.named_children() if name.startswith("discriminator")]
    for disc in discriminators:
        assert not [m for m in disc.modules() if isinstance(m, (nn.BatchNorm1d, nn.Dropout, SeededDropout))]
        d = disc[0].in_features
        real, fake = torch.randn(32, d), torch.randn(32, d)
        stacked, _ = discriminator_bce(disc, real, fake)
        grads = torch.autograd.grad(stacked, list(disc.parameters()))
        logit_real, logit_fake = disc(real), disc(fake)
        apart = nn.functional.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real)) + \
            nn.functional.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
        torch.testing.assert_close(stacked, apart)
        for a, b in zip(grads, torch.autograd.grad(apart, list(disc.parameters())), strict=True):
            torch.testing.assert_close(a, b)
