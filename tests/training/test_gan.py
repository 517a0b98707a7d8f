"""GAN families: the alternating phases each move only their own player, lazy R1 on the
right steps, style mixing and truncation arithmetic, w_avg and the EMA generator, exact
resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from latentserve.training import checkpoint as ckpt
from latentserve.training.families import ImageShape
from latentserve.training.families.dcgan import DCGAN, STANDING_STATS_SEED, DCGANConfig
from latentserve.training.families.gan import pack_images, r1_penalty
from latentserve.training.families.stylegan2 import StyleGAN2, StyleGAN2Config
from latentserve.training.families.stylegan2_nets import minibatch_std
from latentserve.training.trainer import train
from safetensors.torch import load_file
from tiny_runs import tiny_config

MNIST = ImageShape(1, 28, 28)
TINY_STYLE = {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "g_widths": [8, 8, 8]}


def tiny_style(**overrides: object) -> StyleGAN2:
    torch.manual_seed(0)
    config = StyleGAN2Config(**{**TINY_STYLE, "d_widths": [8, 8, 8], **overrides})
    return StyleGAN2(config, MNIST)


def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


@pytest.mark.parametrize(
    "model",
    [
        lambda: DCGAN(DCGANConfig(z_dim=8, g_widths=[8, 8], d_widths=[8, 8]), MNIST),
        tiny_style,
    ],
)
def test_each_phase_moves_only_its_own_player(model) -> None:
    model = model()
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    d_opt, g_opt = model.configure_optimizers(1e-2)
    phases = model.training_phases(x, torch.Generator().manual_seed(0))
    g_before, d_before = snapshot(model.g), snapshot(model.d)
    d_out = next(phases)
    d_opt.zero_grad()
    d_out.loss.backward()
    d_opt.step()
    assert moved(d_before, model.d) and not moved(g_before, model.g)
    assert {"d_loss", "d_real", "d_fake"} <= set(d_out.metrics)
    d_after = snapshot(model.d)
    g_out = next(phases)
    d_opt.zero_grad()
    g_opt.zero_grad()
    g_out.loss.backward()
    assert all(p.grad is None for p in model.d.parameters())  # the critic is not trained here
    g_opt.step()
    assert moved(g_before, model.g) and not moved(d_after, model.d)
    assert next(phases, None) is None


def test_training_step_is_refused_for_a_phased_model() -> None:
    with pytest.raises(TypeError, match="trains in phases"):
        tiny_style().training_step(torch.zeros(2, 1, 28, 28, dtype=torch.uint8), torch.Generator())


def test_r1_is_lazy() -> None:
    model = tiny_style(r1_gamma=1.0, r1_every=3)
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    due = []
    for step in range(7):
        d_out = next(model.training_phases(x, torch.Generator().manual_seed(step)))
        due.append("r1" in d_out.metrics)
        model.after_optimizer_step()
    assert due == [True, False, False, True, False, False, True]
    assert not any(
        "r1" in next(tiny_style(r1_gamma=0.0).training_phases(x, torch.Generator())).metrics
        for _ in range(1)
    )


def test_r1_penalty_is_the_squared_input_gradient() -> None:
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 3.0]]))
    penalty = r1_penalty(lambda x: critic(x).squeeze(1), torch.randn(2, 1, 2, 2))
    assert penalty.tolist() == pytest.approx([1 + 4 + 0.25 + 9] * 2)


def test_style_mixing_takes_layers_from_the_cutoff_on() -> None:
    g = tiny_style().generator
    w, w_mix = torch.zeros(3, 8), torch.ones(3, 8)
    ws = g.mixed_ws(w, w_mix, torch.tensor([1, 3, g.num_ws]))
    assert ws.shape == (3, g.num_ws, 8)
    assert ws[:, :, 0].tolist() == [
        [0.0] + [1.0] * (g.num_ws - 1),
        [0.0] * 3 + [1.0] * (g.num_ws - 3),
        [0.0] * g.num_ws,
    ]
    assert g.num_ws == 2 * 2 + 2  # a 7x7 layer, two per doubling, and the last to_rgb


def test_truncation_pulls_w_towards_its_running_mean() -> None:
    mapping = tiny_style().generator.mapping
    mapping.w_avg.fill_(2.0)
    w = torch.zeros(2, 8)
    out = mapping.truncate(w, torch.tensor([1.0, 0.25]))
    assert out[0].tolist() == [0.0] * 8 and out[1].tolist() == pytest.approx([1.5] * 8)


def test_noise_row_splits_into_one_map_per_layer() -> None:
    g = tiny_style().generator
    assert g.synthesis.noise_shapes == [(7, 7), (14, 14), (14, 14), (28, 28), (28, 28)]
    maps = g.split_noise(torch.arange(g.noise_size, dtype=torch.float32).unsqueeze(0))
    assert [m.shape[2:] for m in maps] == [torch.Size(s) for s in g.synthesis.noise_shapes]
    assert maps[1][0, 0, 0, 0].item() == 49 and maps[-1][0, 0, -1, -1].item() == g.noise_size - 1


def test_noise_inputs_change_the_image_once_their_strength_is_learned() -> None:
    g = tiny_style().generator.eval()
    for layer in g.synthesis.layers:
        layer.noise_strength.data.fill_(0.5)
    ws = g.mixed_ws(*(g.mapping(torch.randn(2, 8)).chunk(2)), torch.tensor([6]))
    noise = torch.randn(1, g.noise_size)
    a = g.synthesis(ws, g.split_noise(noise))
    assert not torch.allclose(a, g.synthesis(ws, g.split_noise(torch.randn(1, g.noise_size))))
    assert torch.equal(a, g.synthesis(ws, g.split_noise(noise)))


def test_image_sizes_the_generator_cannot_reach_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2"):
        DCGAN(DCGANConfig(g_widths=[8, 8], d_widths=[8, 8]), ImageShape(1, 30, 30))
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2"):
        StyleGAN2(StyleGAN2Config(**TINY_STYLE), ImageShape(1, 30, 30))


@pytest.mark.parametrize("name", ["dcgan-tiny", "stylegan2-tiny"])
def test_resume_lands_on_the_uninterrupted_weights(tmp_path: Path, name: str) -> None:
    config = tiny_config(name, steps=9, log_every=3)
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", stop_at=5, progress=False)
    train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / ckpt.CHECKPOINT))
    b = load_file(str(tmp_path / "resumed" / ckpt.CHECKPOINT))
    assert int(a["steps_done"]) == 9
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_stylegan_keeps_w_avg_and_an_ema_generator(tmp_path: Path) -> None:
    train(tiny_config("stylegan2-tiny", steps=6), tmp_path / "run", progress=False)
    weights = load_file(str(tmp_path / "run" / ckpt.CHECKPOINT))
    w_avg = weights["generator.mapping.w_avg"]
    assert w_avg.abs().sum() > 0  # followed the mapping's outputs from zero
    assert torch.equal(weights["ema.shadow.mapping.w_avg"], w_avg)  # copied, not averaged
    assert int(weights["ema.updates"]) == 6
    const = "synthesis.const"
    assert not torch.equal(weights[f"ema.shadow.{const}"], weights[f"generator.{const}"])


def test_dcgan_averages_its_generator_and_gives_the_average_its_own_bn_statistics(
    tmp_path: Path,
) -> None:
    train(tiny_config("dcgan-tiny", steps=6), tmp_path / "run", progress=False)
    model = ckpt.load_run(tmp_path / "run").model
    assert isinstance(model, DCGAN) and int(model.ema.updates) == 6
    live, shadow = model.generator, model.ema.shadow
    assert not torch.equal(live.project.weight, shadow.project.weight)
    # standing statistics: the first norm's mean is that of the shadow's own projections
    # of the calibration batches, not the running mean copied from the trained generator
    batch, batches = 500, model.config.standing_stat_batches
    generator = torch.Generator().manual_seed(STANDING_STATS_SEED)
    with torch.no_grad():
        z = torch.randn(batch * batches, model.config.z_dim, generator=generator)
        h = shadow.project(z).view(-1, shadow.width0, shadow.h0, shadow.w0)
    expected = h.mean((0, 2, 3))
    norm = shadow.body[0]
    assert torch.allclose(norm.running_mean, expected, atol=1e-5)
    assert not torch.allclose(live.body[0].running_mean, expected, atol=1e-3)
    assert norm.momentum == 0.1 and not shadow.training


def test_packs_stack_consecutive_images_along_channels() -> None:
    images = torch.arange(6 * 2 * 3 * 3, dtype=torch.float32).reshape(6, 2, 3, 3)
    packed = pack_images(images, 3)
    assert packed.shape == (2, 6, 3, 3)
    assert torch.equal(packed[1, 2:4], images[4]) and torch.equal(packed[0, :2], images[0])
    assert torch.equal(pack_images(images, 1), images)
    with pytest.raises(ValueError, match="packs of 4"):
        pack_images(images, 4)


@pytest.mark.parametrize(
    "model",
    [
        lambda: DCGAN(DCGANConfig(z_dim=8, g_widths=[8, 8], d_widths=[8, 8], pack=2), MNIST),
        lambda: tiny_style(pack=2),
    ],
)
def test_a_packing_discriminator_scores_one_logit_per_pack(model) -> None:
    model = model()
    x = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    seen: list[tuple[int, ...]] = []
    model.d.register_forward_hook(lambda _, args, out: seen.append((*args[0].shape, *out.shape)))
    phases = model.training_phases(x, torch.Generator().manual_seed(0))
    next(phases).loss.backward()
    next(phases)
    assert seen and all(shape == (3, 2, 28, 28, 3) for shape in seen)


def test_minibatch_std_groups_images_i_and_i_plus_b_over_g() -> None:
    x = torch.randn(8, 3, 2, 2)
    x[4:] = x[:4]  # groups of 2 pair image i with i + 4: identical pairs
    x[5] += 1.0  # except the second group, whose two images differ by 1 everywhere
    grouped = minibatch_std(x, 2)
    assert grouped.shape == (8, 4, 2, 2) and torch.equal(grouped[:, :3], x)
    spread = grouped[:, 3, 0, 0]
    assert spread[[0, 2, 3, 4, 6, 7]].max() < 1e-3
    assert spread[1].item() == pytest.approx(0.5, abs=1e-3) and spread[5] == spread[1]
    whole = minibatch_std(x, 0)[:, 3]  # one spread for the whole batch, as before
    expected = (x.var(0, unbiased=False) + 1e-8).sqrt().mean()
    assert torch.allclose(whole, expected.expand_as(whole))
    with pytest.raises(ValueError, match="groups of 3"):
        minibatch_std(x, 3)
