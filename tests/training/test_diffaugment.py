"""DiffAugment: each policy keeps shapes, is differentiable, draws only from the given
generator, and does what its name says; the GAN phases show the discriminator augmented
images only when policies are configured."""

from __future__ import annotations

import pytest
import torch
from latentserve.training.families import ImageShape
from latentserve.training.families.ddpm import to_signed
from latentserve.training.families.diffaugment import (
    AUGMENTATIONS,
    color,
    cutout,
    diff_augment,
    translation,
)
from latentserve.training.families.stylegan2 import StyleGAN2, StyleGAN2Config

ALL = ["color", "translation", "cutout"]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("policy", sorted(AUGMENTATIONS))
def test_each_policy_keeps_the_shape_and_passes_gradients(policy: str) -> None:
    x = torch.rand(5, 3, 28, 28, requires_grad=True)
    y = AUGMENTATIONS[policy](x * 2 - 1, seeded())
    assert y.shape == x.shape
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert grad.abs().sum() > 0


def test_the_same_generator_state_gives_the_same_augmentation() -> None:
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert torch.equal(diff_augment(x, ALL, seeded(3)), diff_augment(x, ALL, seeded(3)))
    assert not torch.equal(diff_augment(x, ALL, seeded(3)), diff_augment(x, ALL, seeded(4)))


def test_no_policies_is_the_identity() -> None:
    x = torch.rand(2, 1, 28, 28)
    assert diff_augment(x, [], seeded()) is x


def test_translation_shifts_by_whole_pixels_within_an_eighth_and_fills_with_zero() -> None:
    x = torch.zeros(64, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0  # one lit pixel per image, in the middle
    y = translation(x, seeded())
    lit = y[:, 0].flatten(1).argmax(1)
    rows, cols = lit // 28 - 14, lit % 28 - 14
    assert (y.flatten(1).sum(1) == 1).all()  # moved, not blurred or lost
    assert rows.abs().max() <= 4 and cols.abs().max() <= 4  # round(28 / 8)
    assert len({(int(r), int(c)) for r, c in zip(rows, cols, strict=True)}) > 10
    edge = translation(torch.ones(64, 1, 28, 28), seeded())
    assert (edge == 0).any() and set(edge.unique().tolist()) == {0.0, 1.0}


def test_cutout_zeroes_one_square_of_at_most_half_the_size() -> None:
    y = cutout(torch.ones(64, 1, 28, 28), seeded())
    zeroed = (y[:, 0] == 0).float()
    assert (zeroed.flatten(1).sum(1) <= 14 * 14).all()
    assert (zeroed.flatten(1).sum(1) >= 7 * 7).all()  # a corner square is still a quarter
    assert (zeroed.sum(1).max(1).values <= 14).all() and (zeroed.sum(2).max(1).values <= 14).all()


def test_color_is_one_affine_map_of_each_image() -> None:
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    y = color(x, seeded())
    for a, b in zip(x, y, strict=True):  # y = scale * x + shift per image, scale > 0
        scale = torch.linalg.lstsq(
            torch.stack([a.flatten(), torch.ones(a.numel())], 1), b.flatten().unsqueeze(1)
        ).solution[0]
        assert scale.item() >= 0
    assert not torch.allclose(x, y)


def critic_inputs(model: StyleGAN2, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    hook = model.d.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach()))
    phases = model.training_phases(x, seeded())
    d_out = next(phases)
    d_out.loss.backward()
    next(phases)
    hook.remove()
    return seen


@pytest.mark.parametrize("policies", [[], ALL])
def test_the_discriminator_sees_augmented_images_only_when_configured(policies: list) -> None:
    torch.manual_seed(0)
    config = StyleGAN2Config(
        z_dim=8, w_dim=8, g_widths=[8, 8, 8], d_widths=[8, 8, 8], diffaugment=policies
    )
    model = StyleGAN2(config, ImageShape(1, 28, 28))
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    seen = critic_inputs(model, x)
    # real, fake (D phase), the R1 pass on reals (step 0 is an R1 step), fake (G phase)
    assert len(seen) == 4
    assert torch.equal(seen[0], to_signed(x)) == (not policies)
    assert torch.equal(seen[2], to_signed(x)) == (not policies)
