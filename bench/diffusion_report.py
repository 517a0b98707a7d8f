"""Markdown tables of the diffusion benchmark's JSON (what bench/README.md quotes)."""

from __future__ import annotations

MODES = ("request", "iteration")


def markdown(results: dict) -> str:
    return (
        "\n\n".join(
            [
                poisson_table(results),
                ratio_table(results),
                ttfs_table(results),
                steps_table(results),
                *([stages_table(results)] if "stages" in results["iteration"] else []),
            ]
        )
        + "\n"
    )


def poisson_table(results: dict) -> str:
    lines = [
        "| mode | rate req/s | done / sent | images/s | p50 ms | p99 ms | job-steps/s "
        "| jobs / iteration | rows / denoiser call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        cap = results[mode]["capacity"]
        lines.append(
            f"| {mode} | closed loop, {cap['callers']} clients | {cap['completed']} / "
            f"{cap['requests']} | {cap['images_per_s']:.2f} | {cap['p50_ms']:.0f} "
            f"| {cap['p99_ms']:.0f} | {cap['job_steps_per_s']:.0f} "
            f"| {cap['mean_jobs_per_iteration']:.1f} | {cap['mean_rows_per_denoiser_call']:.1f} |"
        )
        for row in results[mode]["rates"]:
            lines.append(
                f"| {mode} | {row['rate']:.2f} | {row['completed']} / {row['requests']} "
                f"| {row['images_per_s']:.2f} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} "
                f"| {row['job_steps_per_s']:.0f} | {row['mean_jobs_per_iteration']:.1f} "
                f"| {row['mean_rows_per_denoiser_call']:.1f} |"
            )
    return "\n".join(lines)


def ratio_table(results: dict) -> str:
    lines = [
        "| rate req/s | images/s iteration / request | p50 iteration / request "
        "| p99 iteration / request |",
        "|---|---|---|---|",
    ]
    pairs = zip(results["request"]["rates"], results["iteration"]["rates"], strict=True)
    for req, it in pairs:
        lines.append(
            f"| {req['rate']:.2f} | {_ratio(it['images_per_s'], req['images_per_s'])} "
            f"| {_ratio(it['p50_ms'], req['p50_ms'])} | {_ratio(it['p99_ms'], req['p99_ms'])} |"
        )
    return "\n".join(lines)


def ttfs_table(results: dict) -> str:
    lines = [
        "| mode | repeats | long jobs x steps | client p50 ms | client p99 ms "
        "| server histogram p50 ms | server histogram p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode in MODES:
        t = results[mode]["ttfs"]
        lines.append(
            f"| {mode} | {t['repeats']} | {t['long_jobs']} x {t['long_steps']} "
            f"| {t['client_p50_ms']:.0f} | {t['client_p99_ms']:.0f} "
            f"| {t['server_p50_ms']:.0f} | {t['server_p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def steps_table(results: dict) -> str:
    it = results["iteration"]
    steps, raw, split, ratios = it["steps"], it["raw"], it["raw_split"], it["steps_ratios"]
    windows = len(it["steps_windows"])
    return "\n".join(
        [
            "| running jobs | server rows / call | server job-steps/s | raw ORT one call "
            "| raw ORT split like the server | server / raw one call | server / raw split "
            "| jobs / iteration | ms / call: server, raw one, raw split |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {steps['jobs']} | {steps['mean_rows_per_denoiser_call']:.1f} "
            f"| {steps['job_steps_per_s']:.1f} | {raw['job_steps_per_s']:.1f} ({raw['rows']} rows) "
            f"| {split['job_steps_per_s']:.1f} ({split['slots']} x {_part(split)} rows) "
            f"| {ratios['server_over_raw']:.2f}x | {ratios['server_over_raw_split']:.2f}x "
            f"| {steps['mean_jobs_per_iteration']:.2f} "
            f"| {steps['ms_per_denoiser_call']:.1f}, {raw['ms_per_call_p50']:.1f}, "
            f"{split['ms_per_call_p50']:.1f} |",
            "",
            f"Medians of {windows} alternating windows (server, raw one call, raw split); "
            "the ratios are medians of the per-window ratios; server ms / call is the mean "
            "of latentserve_batch_compute_seconds (one graph run, rows / call above), raw "
            "the median of a whole call (split: both parts).",
        ]
    )


def stages_table(results: dict) -> str:
    lines = [
        "| jobs at once | steps | client p50 ms | client mean ms | text encode ms | denoise ms "
        "| decode ms | other ms | by hand: text / denoise / decode ms | by hand total ms "
        "| client / by hand |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["iteration"]["stages"]:
        lines.append(
            f"| {row['concurrency']} | {row['steps']} | {row['client_p50_ms']:.0f} "
            f"| {row['client_mean_ms']:.0f} | {row['text_encode_ms']:.1f} "
            f"| {row['denoise_ms']:.0f} | {row['decode_ms']:.1f} | {row['other_ms']:.1f} "
            f"| {row['raw_text_encode_ms']:.1f} / {row['raw_denoise_ms']:.0f} / "
            f"{row['raw_decode_ms']:.1f} | {row['raw_total_ms']:.0f} "
            f"| {row['client_over_raw']:.2f}x |"
        )
    repeats = results["iteration"]["stages"][0]["repeats"]
    lines += [
        "",
        f"Medians over {repeats} rounds, each a server round then the same calls by hand; "
        "server stages are per-job means from latentserve_job_stage_seconds; other = client "
        "mean - stages (gRPC, PNG encoding, admission).",
    ]
    return "\n".join(lines)


def _part(raw: dict) -> int:
    return -(-raw["rows"] // raw["slots"])


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"
