"""``latentserve train``/``eval``/``export`` end to end through the one CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentserve.cli import main
from latentserve.manifest import Manifest


def test_train_eval_export_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ae.toml"
    config.write_text(
        'family = "autoencoder"\ndataset = "mnist"\n[model]\nlatent_dim = 3\n'
        "encoder_widths = [4, 8]\ndecoder_widths = [4, 8]\nencoder_hidden = 16\n"
        "decoder_hidden = 16\n[train]\nsteps = 4\nbatch_size = 16\n"
    )
    run_dir = tmp_path / "run"
    assert main(["train", str(config), "--run-dir", str(run_dir), "--no-progress"]) == 0
    assert "test recon_bits_per_dim" in capsys.readouterr().out
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "recon_bits_per_dim" in out and "not a likelihood bound" in out
    assert main(["eval", str(run_dir), "--iw-k", "4"]) == 2  # no prior: refused clearly
    assert "need a prior" in capsys.readouterr().err
    repo = tmp_path / "models"
    assert main(["export", str(run_dir), "--repository", str(repo), "--name", "ae"]) == 0
    assert Manifest.load(repo / "ae" / "1").capabilities == ["encode", "reconstruct"]
    vae_dir = tmp_path / "vae"
    assert main(["train", "vae-tiny", "--run-dir", str(vae_dir), "--no-progress"]) == 0
    table = tmp_path / "table.md"
    assert main(["eval", str(vae_dir), str(vae_dir), "--iw-k", "2", "--table", str(table)]) == 0
    rows = table.read_text().splitlines()
    assert len(rows) == 4 and rows[2] == rows[3]  # deterministic given the run's seed
    cells = [c.strip() for c in rows[2].split("|")]
    assert cells[1:4] == ["vae", "vae", "30"] and "negative ELBO" in cells[6]
    assert 0 < float(cells[5]) <= float(cells[4]) + 0.05  # IW k=2 no looser than the ELBO


def test_train_refuses_config_and_resume_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "vae-tiny", "--resume", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["train", "no-such-config"]) == 2
    assert "no built-in config named 'no-such-config'" in capsys.readouterr().err


def test_eval_of_a_family_without_likelihood_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "ddpm"
    assert main(["train", "ddpm-tiny", "--run-dir", str(run_dir), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "test denoising_mse" in out and "no likelihood" in out
    table = tmp_path / "table.md"
    assert main(["eval", str(run_dir), "--table", str(table)]) == 0
    out = capsys.readouterr().out
    assert "denoising_mse" in out and "no likelihood" in out and "bits_per_dim" not in out
    cells = [c.strip() for c in table.read_text().splitlines()[2].split("|")]
    assert cells[2:5] == ["ddpm", "30", "-"] and "no likelihood" in cells[6]
    # one `eval --iw-k` covers runs of every family: there is no bound to tighten here
    assert main(["eval", str(run_dir), "--iw-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "denoising_mse" in out and "no likelihood" in out and "iw2" not in out
