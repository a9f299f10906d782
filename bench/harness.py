"""The pos-etl benchmark (bench/README.md): generate datasets at three scales,
check that every engine's output equals pos-etl's, then time the engines
alternately and report medians, peak memory and ratios. With --large, one
run of each engine on 100 million change rows instead, at their default
settings, recording how each ends (a failure or a kill is a result).

Run through bench/run.sh, which builds pos-etl and the Python environment.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars

BENCH = Path(__file__).resolve().parent
# Scales: (label, days of trading for 100,000 items); pos-etl generate makes
# about 306,000 change rows a day for 100,000 items.
SCALES = {"1M": 3, "10M": 33, "30M": 98, "100M": 327}
ITEMS = 100_000
SEED = 1


@dataclass
class Engine:
    """One way of computing the two outputs."""

    name: str
    format: str
    command: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name} → {self.format}"


@dataclass
class Measurement:
    seconds: float
    peak_rss_bytes: int


def engines(pos_etl: Path, threads: int, scale: str) -> list[Engine]:
    python = sys.executable
    listed = []
    for fmt in ["csv", "parquet"]:
        listed.append(Engine("pos-etl", fmt, [str(pos_etl), "enrich", "--threads", str(threads), "--data", "{data}",
                                              "--out", "{out}", "--current-out", "{current}"]))
        listed.append(Engine("duckdb", fmt, [python, str(BENCH / "duckdb_enrich.py"), "{data}", "{out}", "{current}",
                                             str(threads)]))
        listed.append(Engine("polars", fmt, [python, str(BENCH / "polars_enrich.py"), "{data}", "{out}", "{current}",
                                             str(threads)]))
    if scale == "1M":
        listed.append(Engine("pandas", "csv", [python, str(BENCH / "pandas_enrich.py"), "{data}", "{out}", "{current}"]))
    return listed


def run_timed(engine: Engine, data: Path, out_dir: Path) -> Measurement:
    """Runs `engine` once under /usr/bin/time; returns wall time and peak RSS."""
    measurement, failure = run_measured(engine, data, out_dir)
    if failure:
        sys.exit(f"{engine.label} {failure}")
    return measurement


def run_measured(engine: Engine, data: Path, out_dir: Path, timeout: float | None = None) -> tuple[Measurement, str | None]:
    """Runs `engine` once under /usr/bin/time: wall time and peak RSS, and how
    it failed (None if it did not). An engine still running after `timeout`
    seconds is killed, and that is how it failed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"data": str(data), "out": str(out_dir / f"enriched.{engine.format}"),
             "current": str(out_dir / f"current_inventory.{engine.format}")}
    command = [part.format(**paths) for part in engine.command]
    timing = out_dir / "time.txt"
    # Write back what earlier runs left dirty, outside the timing: otherwise the
    # next engine pays for it (pos-etl syncs its own outputs before it exits,
    # DuckDB and Polars leave theirs to the kernel).
    os.sync()
    # Run in the output directory: what an engine spills by default (DuckDB's .tmp) goes there.
    timer = subprocess.Popen(["/usr/bin/time", "-f", "%e %M", "-o", str(timing), *command],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=out_dir)
    timed_out = False
    try:
        _, stderr = timer.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Kill the engine, not time, which then writes what it measured.
        timed_out = True
        for child in Path(f"/proc/{timer.pid}/task/{timer.pid}/children").read_text().split():
            os.kill(int(child), 9)
        _, stderr = timer.communicate()
    # time writes "Command terminated by signal 9" or "exited with non-zero status" above its figures
    seconds, kilobytes = timing.read_text().split()[-2:]
    measurement = Measurement(float(seconds), int(kilobytes) * 1024)
    if timer.returncode == 0:
        return measurement, None
    if timed_out:
        return measurement, f"did not finish in {timeout:.0f} s; killed:\n{' '.join(command)}"
    killed = " (killed by a signal: out of memory?)" if timer.returncode < 0 or timer.returncode >= 128 else ""
    tail = stderr.strip().splitlines()[-3:]
    return measurement, f"failed ({timer.returncode}){killed}:\n{' '.join(command)}\n" + "\n".join(tail)


def same_rows(expected: Path, found: Path) -> str | None:
    """None if the two outputs hold the same rows in the same order, else what differs."""
    if expected.suffix == ".csv":
        if expected.read_bytes() == found.read_bytes():
            return None
        return f"{found} differs from {expected} (try: diff {expected} {found} | head)"
    con = duckdb.connect()
    numbered = "SELECT row_number() OVER () AS row_number, * FROM read_parquet('{}')"
    a, b = numbered.format(expected), numbered.format(found)
    differing = con.execute(f"SELECT count(*) FROM (({a} EXCEPT ALL {b}) UNION ALL ({b} EXCEPT ALL {a}))").fetchone()[0]
    return None if differing == 0 else f"{differing} rows differ between {expected} and {found}"


def generate(pos_etl: Path, work: Path, scale: str) -> tuple[Path, dict]:
    data = work / f"data-{scale}"
    counts_file = data / "counts.json"
    if not counts_file.exists():
        shutil.rmtree(data, ignore_errors=True)
        subprocess.run([str(pos_etl), "generate", "--out-dir", str(data), "--items", str(ITEMS),
                        "--days", str(SCALES[scale]), "--seed", str(SEED)], check=True)
        counts = {}
        for kind in ["snapshot", "change"]:
            files = [p for p in data.glob(f"inventory_{kind}_*.csv") if p.name != "inventory_change_type.csv"]
            counts[kind] = sum(sum(1 for _ in open(p, "rb")) - 1 for p in files)
        counts_file.write_text(json.dumps(counts))
    return data, json.loads(counts_file.read_text())


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemTotal"))
    revision = subprocess.run(["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1), "cpu": cpu,
            "os": platform.platform(), "pos_etl_revision": revision, "duckdb": duckdb.__version__,
            "polars": polars.__version__, "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pos-etl", type=Path, required=True, help="the release binary")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/pos-etl-bench"))
    parser.add_argument("--scales", default="1M,10M,30M")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per engine (median reported)")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--large", action="store_true",
                        help="one run of each engine, CSV only, at default settings, on 100 million change rows")
    parser.add_argument("--timeout", type=float, default=900,
                        help="with --large, seconds after which an engine still running is killed")
    args = parser.parse_args()
    if args.large:
        large(args)
        return

    results = {"machine": machine(), "threads": args.threads, "runs": args.runs, "scales": []}
    for scale in args.scales.split(","):
        data, counts = generate(args.pos_etl, args.work_dir, scale)
        rows_in = counts["snapshot"] + counts["change"]
        print(f"== {scale}: {counts['change']:,} change rows, {counts['snapshot']:,} snapshot rows", flush=True)
        listed = engines(args.pos_etl, args.threads, scale)
        # A first run of each engine warms the page cache and is the one checked.
        for engine in listed:
            run_timed(engine, data, args.work_dir / "out" / engine.name)
            reference = args.work_dir / "out" / "pos-etl"
            for name in [f"enriched.{engine.format}", f"current_inventory.{engine.format}"]:
                problem = same_rows(reference / name, args.work_dir / "out" / engine.name / name)
                if problem:
                    sys.exit(f"{engine.label}: {problem}")
            print(f"   {engine.label}: output equals pos-etl's", flush=True)
        measured: dict[str, list[Measurement]] = {engine.label: [] for engine in listed}
        for run in range(args.runs):
            # Alternate the engines, and rotate who goes first.
            for engine in listed[run % len(listed):] + listed[:run % len(listed)]:
                m = run_timed(engine, data, args.work_dir / "out" / engine.name)
                measured[engine.label].append(m)
                print(f"   run {run + 1}: {engine.label}: {m.seconds:.2f} s, {m.peak_rss_bytes / 2**30:.2f} GiB",
                      flush=True)
        summary = {}
        for engine in listed:
            times = [m.seconds for m in measured[engine.label]]
            summary[engine.label] = {
                "engine": engine.name, "format": engine.format,
                "seconds": statistics.median(times), "all_seconds": times,
                "peak_rss_bytes": max(m.peak_rss_bytes for m in measured[engine.label]),
                "rows_per_second": rows_in / statistics.median(times),
            }
        results["scales"].append({"scale": scale, "days": SCALES[scale], "change_rows": counts["change"],
                                  "snapshot_rows": counts["snapshot"], "engines": summary})
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, args.results)


def large(args: argparse.Namespace) -> None:
    """Target 3 of issue 17: every engine once on 100 million change rows,
    CSV to CSV, at its default settings (pos-etl: no flags; DuckDB: its
    default memory limit, 80% of RAM, spilling beyond it; Polars: the
    streaming engine), each given every core. How each run ends is the
    result: its time and peak memory, or how it failed. Outputs are compared
    by hash and removed, so that only one is on disk at a time."""
    import hashlib

    data, counts = generate(args.pos_etl, args.work_dir, "100M")
    print(f"== 100M: {counts['change']:,} change rows, {counts['snapshot']:,} snapshot rows", flush=True)
    cores = str(os.cpu_count())
    python = sys.executable
    listed = [
        Engine("pos-etl", "csv", [str(args.pos_etl), "enrich", "--data", "{data}", "--out", "{out}",
                                  "--current-out", "{current}"]),
        Engine("duckdb", "csv", [python, str(BENCH / "duckdb_enrich.py"), "{data}", "{out}", "{current}", cores]),
        Engine("polars", "csv", [python, str(BENCH / "polars_enrich.py"), "{data}", "{out}", "{current}", cores]),
    ]
    rows = []
    reference = None
    for engine in listed:
        out_dir = args.work_dir / "out-100M" / engine.name
        shutil.rmtree(out_dir, ignore_errors=True)
        measurement, failure = run_measured(engine, data, out_dir, args.timeout)
        if failure is None:
            digests = []
            for name in ["enriched.csv", "current_inventory.csv"]:
                with open(out_dir / name, "rb") as f:
                    digests.append(hashlib.file_digest(f, "sha256").hexdigest())
            if engine.name == "pos-etl":
                reference = digests
            elif digests != reference:
                failure = "its output differs from pos-etl's" if reference else "completed; pos-etl failed, not compared"
        shutil.rmtree(out_dir, ignore_errors=True)
        if failure:
            ended = failure.splitlines()[0]
        else:
            ended = "completed" if engine.name == "pos-etl" else "completed, output equals pos-etl's"
        print(f"   {engine.label}: {measurement.seconds:.1f} s, {measurement.peak_rss_bytes / 2**30:.2f} GiB, {ended}",
              flush=True)
        if failure:
            print(failure, flush=True)
        rows.append({"engine": engine.name, "seconds": measurement.seconds,
                     "peak_rss_bytes": measurement.peak_rss_bytes, "ended": ended, "detail": failure})
    results = {"machine": machine(), "threads": os.cpu_count(), "change_rows": counts["change"],
               "snapshot_rows": counts["snapshot"], "engines": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "large.json").write_text(json.dumps(results, indent=2) + "\n")
    write_large_report(results, args.results)


def write_large_report(results: dict, out: Path) -> None:
    """large.md: the table of a --large run."""
    m = results["machine"]
    lines = ["# 100 million change rows, CSV to CSV, default settings", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; {m['os']}. pos-etl "
             f"{m['pos_etl_revision']}, DuckDB {m['duckdb']}, Polars {m['polars']}; {m['date']}. "
             f"{results['change_rows']:,} change rows and {results['snapshot_rows']:,} snapshot rows; one run each, "
             "both outputs.", "",
             "| engine | wall time (s) | peak RSS (GiB) | how it ended |", "|---|---:|---:|---|"]
    for row in results["engines"]:
        lines.append(f"| {row['engine']} | {row['seconds']:.1f} | {row['peak_rss_bytes'] / 2**30:.2f} | {row['ended']} |")
    (out / "large.md").write_text("\n".join(lines) + "\n")


def write_report(results: dict, out: Path) -> None:
    """results.md (the table) and bench.png (time and memory against rows)."""
    m = results["machine"]
    lines = [
        "# pos-etl benchmark results", "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB; {m['os']}. "
        f"pos-etl {m['pos_etl_revision']}, DuckDB {m['duckdb']}, Polars {m.get('polars', '–')}, "
        f"Python {m['python']}; {m['date']}.",
        f"Every engine ran with {results['threads']} threads; median of {results['runs']} runs, engines alternating, "
        "each run after a sync; "
        "peak RSS is the largest of the runs. Both outputs (enriched and current_inventory) are written. "
        "Rows/s counts input rows (changes and snapshots).", "",
        "| scale | change rows | engine | output | wall time (s) | peak RSS (GiB) | rows/s | pos-etl / DuckDB time | "
        "pos-etl / DuckDB memory | pos-etl / Polars time |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for scale in results["scales"]:
        engines = scale["engines"]
        for label, e in engines.items():
            ratio_time = ratio_memory = ratio_polars = ""
            if e["engine"] == "pos-etl":
                duck = engines[f"duckdb → {e['format']}"]
                ratio_time = f"{e['seconds'] / duck['seconds']:.2f}"
                ratio_memory = f"{e['peak_rss_bytes'] / duck['peak_rss_bytes']:.2f}"
                # results from before the Polars peer have no Polars row
                polars_engine = engines.get(f"polars → {e['format']}")
                if polars_engine:
                    ratio_polars = f"{e['seconds'] / polars_engine['seconds']:.2f}"
            lines.append(f"| {scale['scale']} | {scale['change_rows']:,} | {e['engine']} | {e['format']} | "
                         f"{e['seconds']:.2f} | {e['peak_rss_bytes'] / 2**30:.2f} | {e['rows_per_second']:,.0f} | "
                         f"{ratio_time} | {ratio_memory} | {ratio_polars} |")
    lines += ["", "![time and memory against rows](bench.png)", ""]
    (out / "results.md").write_text("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    labels = sorted({label for scale in results["scales"] for label in scale["engines"]})
    for label in labels:
        points = [(s["change_rows"] + s["snapshot_rows"], s["engines"][label]) for s in results["scales"]
                  if label in s["engines"]]
        rows = [p[0] / 1e6 for p in points]
        style = "-o" if label.startswith("pos-etl") else "--s"
        time_axis.plot(rows, [p[1]["seconds"] for p in points], style, label=label)
        memory_axis.plot(rows, [p[1]["peak_rss_bytes"] / 2**30 for p in points], style, label=label)
    time_axis.set(xlabel="input rows (millions)", ylabel="wall time (s)", title="Time")
    memory_axis.set(xlabel="input rows (millions)", ylabel="peak RSS (GiB)", title="Memory")
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(f"pos-etl enrich vs DuckDB, Polars and pandas, {m['cores']} cores")
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=110)


if __name__ == "__main__":
    main()
