"""The recipe table: which graphs and capabilities each family's export produces.

One row per family, keyed by family name like the family table itself
(``latentserve.training.families.registry``); each recipe's plan lives in the module
named after its family. A family without a row cannot be exported, a second row for a
family is refused, and no config string selects code by import.
"""

from __future__ import annotations

from latentserve.exporters.plans import ExportRecipe
from latentserve.exporters.recipes.autoencoder import plan_autoencoder
from latentserve.exporters.recipes.dcgan import plan_dcgan
from latentserve.exporters.recipes.ddpm import plan_ddpm
from latentserve.exporters.recipes.glow import plan_glow
from latentserve.exporters.recipes.klae import plan_klae
from latentserve.exporters.recipes.ldm import plan_ldm
from latentserve.exporters.recipes.nvae import plan_nvae
from latentserve.exporters.recipes.pixelcnn import plan_pixelcnn
from latentserve.exporters.recipes.stylegan2 import plan_stylegan2
from latentserve.exporters.recipes.vae import plan_vae
from latentserve.exporters.recipes.vqvae import plan_vqvae
from latentserve.exporters.recipes.vqvae2 import plan_vqvae2
from latentserve.training.registry import ClosedRegistry

RECIPES: ClosedRegistry[ExportRecipe] = ClosedRegistry.table(
    "export recipe for family",
    [
        ExportRecipe("autoencoder", ["encode", "reconstruct"], plan_autoencoder),
        ExportRecipe("dcgan", ["sample", "interpolate"], plan_dcgan),
        ExportRecipe("ddpm", ["sample", "interpolate"], plan_ddpm),
        ExportRecipe(
            "glow", ["sample", "encode", "reconstruct", "log_prob", "interpolate"], plan_glow
        ),
        ExportRecipe("klae", ["encode", "reconstruct"], plan_klae),
        ExportRecipe("ldm", ["text_to_image", "encode", "reconstruct"], plan_ldm),
        ExportRecipe(
            "nvae", ["sample", "encode", "reconstruct", "log_prob", "interpolate"], plan_nvae
        ),
        ExportRecipe("pixelcnn", ["sample", "log_prob"], plan_pixelcnn),
        ExportRecipe("stylegan2", ["sample", "interpolate"], plan_stylegan2),
        ExportRecipe(
            "vae", ["sample", "encode", "reconstruct", "log_prob", "interpolate"], plan_vae
        ),
        ExportRecipe("vqvae", ["sample", "encode", "reconstruct", "log_prob"], plan_vqvae),
        ExportRecipe("vqvae2", ["sample", "encode", "reconstruct", "log_prob"], plan_vqvae2),
    ],
    name=lambda recipe: recipe.family,
)


def get_recipe(family: str) -> ExportRecipe:
    """The recipe of ``family``; unknown families list the known ones."""
    return RECIPES.get(family)
