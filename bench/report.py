"""bench.md, bench.csv and bench.png from the workers' rows (tables from pandas, the chart from matplotlib)."""
import json
from pathlib import Path

import pandas as pd

from bench import TORCH_CPU

PADDLE_INFERENCE_CPU = "paddle inference cpu (oneDNN)"
PADDLE_TRAINING = "paddle eager cpu (runtime.configure)"
# Goals: (backend, task kind or task, bound, against): issue 7 (<= 0.7 x torch eager), issue 14 (<= 1.2 x
# the fp32 floor at each forward size; Paddle's train step <= 1.5 x torch eager).
GOALS = [(PADDLE_INFERENCE_CPU, "forward 1x3x352x704", 0.7, "torch"),
         (PADDLE_INFERENCE_CPU, "forward", 1.2, "floor"),
         (PADDLE_TRAINING, "train step", 1.5, "torch")]


def frame(rows, floor=None):
    table = pd.DataFrame([r for r in rows if r.get("kind") != "error"])
    if table.empty:
        return table
    torch_median = table[table["backend"] == TORCH_CPU].set_index("task")["median_s"]
    table["x torch cpu"] = [row.median_s / torch_median[row.task] if row.task in torch_median else float("nan")
                            for row in table.itertuples()]
    floors = {task: f["floor_s"] for task, f in (floor or {}).get("tasks", {}).items()}
    # The floor is the CPU's: a GPU row has no ratio to it.
    table["x floor"] = [row.median_s / floors[row.task] if row.task in floors and row.device == "cpu"
                        else float("nan") for row in table.itertuples()]
    return table


def _shown(table):
    shown = pd.DataFrame({
        "backend": table["backend"], "key": table["key"], "task": table["task"],
        "median (s)": table["median_s"].map("{:.3f}".format),
        "min-max (s)": [f"{a:.3f}-{b:.3f}" for a, b in zip(table["min_s"], table["max_s"])],
        "IQR (s)": [f"{a:.3f}-{b:.3f}" for a, b in zip(table["p25_s"], table["p75_s"])],
        "runs": table["repeats"],
        "x torch eager cpu": table["x torch cpu"].map(lambda v: "" if v != v else f"{v:.2f}"),
        "x fp32 floor": table["x floor"].map(lambda v: "" if v != v else f"{v:.2f}"),
        "peak RSS (MB)": table["peak_rss_mb"], "RSS growth (MB)": table["peak_above_start_mb"],
        "load before": table["load_before"].map("{:.2f}".format),
    })
    if "device_peak_mb" in table:
        shown["device peak (MB)"] = table["device_peak_mb"]
    return shown.sort_values(["task", "backend"], kind="stable")


def goal_lines(table):
    lines = []
    column = {"torch": ("x torch cpu", "torch eager"), "floor": ("x floor", "the fp32 floor")}
    for backend, task, goal, against in GOALS:
        col, name = column[against]
        hits = table[(table["backend"] == backend) & ((table["task"] == task) | (table["kind"] == task))]
        for row in hits.itertuples():
            ratio = table.loc[row.Index, col]
            if ratio == ratio:
                lines.append(f"- {backend}, {row.task}: **{ratio:.2f} x** {name} "
                             f"(goal <= {goal}: {'met' if ratio <= goal else 'missed'})")
    return lines


def floor_lines(floor, exported):
    """The floor's basis: the CPU's peak two ways and each task's FLOPs (and, where a Paddle Inference
    export was timed, that it does fewer)."""
    peak = floor["peak"]
    isa = peak["isa peak GFLOP/s"]
    lines = [f"- fp32 peak from the ISA: {peak['cores']} cores x {peak['FMA units per core']} FMA units x "
             f"{peak['fp32 lanes']} lanes ({peak['isa']}) x {peak['FLOPs per lane']} x "
             f"{peak['clock GHz'] or float('nan'):.2f} GHz (the clock /proc/cpuinfo reports) = "
             f"**{isa or float('nan'):.1f} GFLOP/s**",
             f"- measured: {peak['measured by']} = **{peak['measured GEMM GFLOP/s']:.1f} GFLOP/s**",
             f"- the floor uses the larger, {peak['floor peak GFLOP/s']:.1f} GFLOP/s (a CPU boosting above its "
             f"reported clock beats the ISA figure); bf16 hardware: {', '.join(peak['bf16 hardware']) or 'none'}",
             "", "| task | GFLOP (torch flop counter) | fp32 floor (s) |", "|---|---|---|"]
    lines += [f"| {task} | {f['GFLOP']:.1f} | {f['floor_s']:.3f} |" for task, f in floor["tasks"].items()]
    if exported:
        lines += ["", "The FLOPs are the official network's. A Paddle Inference export does fewer: it computes each "
                      "upconv (nearest x2, then 3x3) as one stride-2 transposed convolution that reads a 2x2 window "
                      "per output pixel, 4/9 of that layer's multiply-adds (paddle_bts.bts.upsample2_conv3x3)."]
    return lines


def chart(table, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks) + 1, 4.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        part = table[table["task"] == task]
        y = range(len(part))
        median, low, high = (part[c].to_numpy() for c in ("median_s", "min_s", "max_s"))
        ax.barh(y, median, xerr=[median - low, high - median],
                color=["#4c72b0" if b.startswith("torch") else "#dd8452" for b in part["backend"]], capsize=3)
        ax.set_yticks(list(y), part["backend"], fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("seconds (median, min-max), log scale")
        ax.set_title(task, fontsize=10)
        for i, v in zip(y, median):
            ax.text(v, i, f" {v:.2f}", va="center", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(rows, meta, folder, name):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = frame(rows, meta.get("floor"))
    errors = [r for r in rows if r.get("kind") == "error"]
    csv, md, png = folder / f"{name}.csv", folder / f"{name}.md", folder / f"{name}.png"
    table.to_csv(csv, index=False)
    head = (f"# BTS speed: {meta['encoder']} ({name})\n\n"
            f"Run {meta['started']} on {meta['cpu']} ({meta['cores available']} cores available); torch "
            f"{meta['torch']}, paddlepaddle {meta['paddlepaddle']}. Load average (1 min) at start "
            f"{meta['load_start'][0]:.2f}, at end {meta['load_end'][0]:.2f}; each task's own in `load before`.\n"
            f"Each backend in a worker process of its own; {meta['warmup']} untimed warm-up call(s), then up to "
            f"{meta['repeats']} timed calls (at least 3 where a task passes {meta['max_seconds']:g} s). Peak RSS: "
            f"the worker's resident-set high-water mark over the task (warm-up included); RSS growth: that peak "
            f"minus the RSS before the task (model, weights and export already loaded).\n")
    parts = [head]
    if len(table):
        parts += ["## Results\n", _shown(table).to_markdown(index=False), ""]
        if meta.get("floor"):
            exported = table["key"].str.startswith("paddle-inference").any()
            parts += ["## Compute floor\n", "\n".join(floor_lines(meta["floor"], exported)), ""]
        goals = goal_lines(table)
        if goals:
            parts += ["## Ratios (same run)\n", "\n".join(goals), ""]
        chart(table, png, f"{meta['encoder']}: {name} ({meta['started']}, load {meta['load_start'][0]:.2f})")
    if meta["skipped"]:
        parts += ["## Not run\n", "\n".join(f"- `{k}`: {why}" for k, why in meta["skipped"].items()), ""]
    if errors:
        parts += ["## Failed\n", "\n".join(f"- {r['backend']}: {r['error']}" for r in errors), ""]
    parts += ["## Settings\n", "```json", json.dumps({k: v for k, v in meta.items() if k not in ("skipped", "floor")}, indent=1,
                                                     default=str), "```", ""]
    md.write_text("\n".join(parts))
    return [md, csv] + ([png] if len(table) else [])
