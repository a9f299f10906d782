"""The table and plots of bench/latency.sh, from the --metrics files it keeps.

Usage: latency_report.py DIR RATE SECONDS
Writes bench/results/latency.md and bench/results/latency_{latency,insert}.png.
"""

import json
import math
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# The first batches catch up from the stream's start; the steady state is what the original measured.
WARM_UP = 3
VARIANTS = {"all": "both tables", "agg": "current_inventory alone"}
# The original study, Spark Structured Streaming into PostgreSQL, 1 to 6 producers (published figures).
ORIGINAL = "| Spark → PostgreSQL (original study), K = 1–6 | | 650–3,700 | 0.08–0.18 s (insert) | 0.37–0.60 s | | 0.54–0.61 s | | |"


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def work_s(batch):
    return (batch["rules_ms"] + batch["write_ms"] + batch["commit_ms"]) / 1000


def rate(batches):
    """Records per second committed, from the start of the first batch to the end of the last."""
    first = batches[0]
    start = first["committed_at"] - (first["decode_ms"] / 1000 + work_s(first))
    return sum(b["records"] for b in batches) / (batches[-1]["committed_at"] - start)


def row(label, batches):
    latency = [b["latency_ms"] / 1000 for b in batches if b["latency_ms"] is not None]
    return (
        f"| {label} | {len(batches)} | {sum(b['records'] for b in batches) / len(batches):,.0f} "
        f"| {sum(map(work_s, batches)) / len(batches):.3f} s "
        f"| {sum(latency) / len(latency):.3f} s | {percentile(latency, 0.5):.3f} s | {percentile(latency, 0.95):.3f} s "
        f"| {max(b['max_latency_ms'] or 0 for b in batches) / 1000:.3f} s | {rate(batches):,.0f} |"
    )


def plot(runs, value, ylabel, path):
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for variant, label in VARIANTS.items():
        points = [(b["records"], value(b)) for k, v, batches in runs if v == variant for b in batches if value(b) is not None]
        if not points:
            continue
        x, y = np.array(points).T
        dots = axes.scatter(x, y, s=8, alpha=0.5, label=label)
        slope, intercept = np.polyfit(x, y, 1)
        line = np.linspace(0, x.max(), 50)
        axes.plot(line, slope * line + intercept, color=dots.get_facecolor()[0], alpha=1,
                  label=f"trend: {intercept:.3f} s + {slope * 1000:.3f} s per 1,000 rows")
    axes.set_xlabel("rows per batch")
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    directory, rate_per_producer, seconds = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    runs = []
    for path in sorted(directory.glob("k*_*.jsonl"), key=lambda p: (int(p.stem.split("_")[0][1:]), p.stem)):
        k, variant = path.stem.split("_")
        batches = lines(path)
        runs.append((int(k[1:]), variant, batches[WARM_UP:] or batches))
    out = [
        f"K producers × {int(rate_per_producer):,} records/s each for {seconds} s; the first {WARM_UP} batches left out.",
        "",
        "| run | batches | records/batch | rules + writes + commit per batch | latency mean | p50 | p95 | max | records/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [row(f"K = {k}, {VARIANTS[variant]}", batches) for k, variant, batches in runs]
    out.append(ORIGINAL)
    out += ["", "Catching up with events already on the topics (highest rate):", "",
            "| run | batches | records/batch | rules + writes + commit per batch | latency mean | p50 | p95 | max | records/s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for variant, label in VARIANTS.items():
        path = directory / f"catchup_{variant}.jsonl"
        if path.exists():
            out.append(row(label, lines(path)))
    queries = directory / "queries.json"
    if queries.exists():
        q = json.loads(queries.read_text())
        out += ["", f"Over {q['enriched_rows']:,} rows of enriched: the original's aggregate "
                f"(`SELECT store_id, item_id, sum(quantity) FROM enriched GROUP BY 1, 2`) {q['aggregate_ms']:.1f} ms; "
                f"`SELECT * FROM current_inventory` {q['current_inventory_ms']:.1f} ms (medians of 5)."]
    results = pathlib.Path("bench/results")
    (results / "latency.md").write_text("\n".join(out) + "\n")
    plot(runs, lambda b: b["latency_ms"] and b["latency_ms"] / 1000, "latency (s)", results / "latency_latency.png")
    plot(runs, work_s, "rules + writes + commit (s)", results / "latency_insert.png")


main()
