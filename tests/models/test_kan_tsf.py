"""KAN-TSF: RevIN, channel independence / mixing, affine equivariance, a short training run."""

from __future__ import annotations

import torch

import kanzoo.models as zoo
from kanzoo.models.kan_tsf import RevIN


def test_revin_round_trip_and_normalised_statistics():
    x = torch.randn(4, 30, 3, dtype=torch.float64) * 5 + 7
    revin = RevIN(3, eps=0.0).double()
    with torch.no_grad():
        revin.weight.copy_(torch.tensor([2.0, 0.5, 1.5]))
        revin.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    z, stats = revin.normalize(x)
    torch.testing.assert_close(revin.denormalize(z, stats), x)
    plain, _ = RevIN(3, affine=False, eps=0.0).double().normalize(x)
    torch.testing.assert_close(plain.mean(1), torch.zeros(4, 3, dtype=torch.float64))
    torch.testing.assert_close(plain.std(1, unbiased=False), torch.ones(4, 3, dtype=torch.float64))


def test_forecast_is_equivariant_to_each_window_level_and_scale():
    """RevIN makes the forecaster commute with x -> a x + b per channel (a > 0)."""
    model = zoo.create_model("kan_tsf", lookback=24, horizon=6, num_channels=2, revin_eps=0.0).double().eval()
    x = torch.randn(3, 24, 2, dtype=torch.float64)
    a, b = torch.tensor([3.0, 0.2], dtype=torch.float64), torch.tensor([-4.0, 10.0], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(x * a + b), model(x) * a + b)


def test_channel_independent_unless_mixing_is_on():
    x = torch.randn(2, 36, 3)
    bumped = x.clone()
    bumped[:, :, 1] += torch.randn(2, 36)
    independent = zoo.create_model("kan_tsf", num_channels=3).eval()
    mixing = zoo.create_model("kan_tsf", num_channels=3, channel_mixing=True).eval()
    with torch.no_grad():
        a, b = independent(x), independent(bumped)
        torch.testing.assert_close(a[..., [0, 2]], b[..., [0, 2]])  # other channels untouched
        assert not torch.allclose(a[..., 1], b[..., 1])
        c, d = mixing(x), mixing(bumped)
        assert not torch.allclose(c[..., 0], d[..., 0])  # mixing couples the channels
    assert zoo.count_parameters(mixing) > zoo.count_parameters(independent)


def test_kan_layers_come_from_the_factory_and_the_twin_swaps_only_them():
    from kanzoo.layers import KANLinear

    kan, twin = zoo.create_model("kan_tsf_tiny"), zoo.create_model("tsf_tiny")
    kan_layers = {n for n, m in kan.named_modules() if isinstance(m, KANLinear)}
    assert kan_layers == {"time_mix.0.fc1", "time_mix.0.fc2", "head"}
    assert {n for n, m in twin.named_modules() if isinstance(m, torch.nn.Linear)} == kan_layers
    assert isinstance(twin.time_mix[0].act, torch.nn.GELU) and isinstance(
        kan.time_mix[0].act, torch.nn.Identity
    )
    rbf = zoo.create_model("kan_tsf", layer="kan_rbf")
    assert type(rbf.head.basis).__name__ == "RBFBasis"


def _val_mse(model, dm) -> float:
    from kanzoo.train.tasks_science import Forecasting

    task, sums = Forecasting(), None
    with torch.no_grad():
        for batch in dm.loader("val", batch_size=64, shuffle=False):
            part = task.eval_sums(model.eval(), batch)
            sums = part if sums is None else {k: sums[k] + v for k, v in part.items()}
    return task.finalize(sums)["val_loss"]


def test_a_short_training_run_improves_the_validation_error(tmp_path):
    from kanzoo.data import build_data
    from kanzoo.train import OptimConfig, Trainer, TrainerConfig

    dm = build_data("elnino")
    torch.manual_seed(0)
    model = zoo.create_model("kan_tsf", lookback=36, horizon=12, num_channels=1)
    before = _val_mse(model, dm)
    config = TrainerConfig(
        run_dir=str(tmp_path / "run"), max_steps=40, batch_size=32, device="cpu", progress=False
    )
    Trainer(model=model, data=dm, config=config, optim=OptimConfig(lr=3e-3)).fit()
    after = _val_mse(model, dm)
    assert after < 0.8 * before, (before, after)
    loaded = zoo.from_pretrained(tmp_path / "run" / "final")
    assert abs(_val_mse(loaded, dm) - after) < 1e-6
