"""Server RSS before, during and after rounds of concurrent log-prob requests.

    python bench/log_prob_memory.py --repository models --images 16 --samples 256 \\
        --rounds 3 --concurrent 4

Prints one line per round: the status codes, the seconds it took, RSS after it and the
peak seen (read every 50 ms).
"""

from __future__ import annotations

import argparse
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from latentserve.clients.local import LocalServer
from soak import digit_pngs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrent", type=int, default=1)
    args = parser.parse_args()
    images = [base64.b64encode(p).decode() for p in digit_pngs(args.images)]
    body = {"images": images, "samples": args.samples, "seed": 1}
    with LocalServer(args.repository, env={"OMP_NUM_THREADS": "1"}) as server:
        assert server._process is not None
        process = psutil.Process(server._process.pid)
        with httpx.Client(base_url=server.http_url, timeout=600) as http:
            models = http.get("/v1/models").json()["models"]
            model = next(m["name"] for m in models if "log_prob" in m["capabilities"])
            print(f"{model}: RSS idle {process.memory_info().rss / 2**20:.0f} MB")
            url = f"/v1/models/{model}/log-prob"
            for round_ in range(args.rounds):
                started, peak = time.perf_counter(), 0
                with ThreadPoolExecutor(args.concurrent) as pool:
                    calls = [pool.submit(http.post, url, json=body) for _ in range(args.concurrent)]
                    while not all(c.done() for c in calls):
                        peak = max(peak, process.memory_info().rss)
                        time.sleep(0.05)
                codes = [c.result().status_code for c in calls]
                print(
                    f"round {round_}: {codes} in {time.perf_counter() - started:.1f} s, "
                    f"RSS after {process.memory_info().rss / 2**20:.0f} MB, "
                    f"peak {max(peak, process.memory_info().rss) / 2**20:.0f} MB"
                )


if __name__ == "__main__":
    main()
