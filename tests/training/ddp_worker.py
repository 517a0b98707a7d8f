"""Run by ``torchrun`` in the data-parallel tests: trains a config on every rank and saves
each rank's own weights, so the test can compare the replicas with each other and with
one process.

``ddp_worker.py CONFIG_JSON OUT_DIR [STOP_AT]``: trains into ``OUT_DIR/full`` and, with
``STOP_AT``, also into ``OUT_DIR/resumed`` stopped at that step and then resumed to the
end. Each run folder gets ``rank<R>.safetensors`` (this rank's model state).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from latentserve.training import distributed
from latentserve.training.config import load_config
from latentserve.training.trainer import TrainResult, resume, train
from safetensors.torch import save_file


def save_replica(result: TrainResult, rank: int) -> None:
    assert result.model is not None
    state = {k: v.detach().contiguous() for k, v in result.model.state_dict().items()}
    save_file(state, str(result.run_dir / f"rank{rank}.safetensors"))


def main() -> None:
    config = load_config(Path(sys.argv[1]))
    out = Path(sys.argv[2])
    stop_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    rank = distributed.ranks_from_env().rank
    try:
        save_replica(train(config, out / "full", progress=False), rank)
        if stop_at is not None:
            train(config, out / "resumed", stop_at=stop_at, progress=False)
            save_replica(resume(out / "resumed", progress=False), rank)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main()
