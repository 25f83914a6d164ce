"""Measure `anastrozole-cds population` on generated exports: patients per second and peak
memory, for the in-process engine (1 and 2 workers) and Spark local[2]; and where the time
goes (cProfile). Not run by `make test` or `make bench`: it takes minutes and gigabytes.

    .venv/bin/python benchmarks/population.py --patients 20000 200000 --folder /tmp/population
    .venv/bin/python benchmarks/population.py --patients 20000 --profile

Exports are generated once into FOLDER (sandbox/sample_export.py --patients N; the mix is
sandbox.synthetic.PopulationMix) and reused. Memory is sampled every 50 ms over the whole
process tree (psutil): the peak of the sum, and for Spark the JVM (driver and executor in
local mode) and its Python workers apart. The figures go to docs/population.md.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandbox.patients import REFERENCE_NOW  # noqa: E402
from sandbox.sample_export import write_population  # noqa: E402

COMMAND = [sys.executable, "-m", "anastrozole_cds.cli", "population"]
NOW = REFERENCE_NOW.isoformat()


@dataclass
class Peak:
    total: int = 0  # the whole tree, summed
    jvm: int = 0
    python_workers: int = 0  # Spark's Python workers, summed


def sample(process: psutil.Process, peak: Peak, stop: threading.Event) -> None:
    while not stop.wait(0.05):
        try:
            tree = [process, *process.children(recursive=True)]
        except psutil.Error:  # the command ended
            return
        total = jvm = workers = 0
        for member in tree:
            try:
                rss, name, command = member.memory_info().rss, member.name(), member.cmdline()
            except psutil.Error:  # a worker that just ended
                continue
            total += rss
            jvm += rss if name == "java" else 0
            workers += rss if any("pyspark" in part and "daemon" in part for part in command) else 0
        peak.total, peak.jvm = max(peak.total, total), max(peak.jvm, jvm)
        peak.python_workers = max(peak.python_workers, workers)


def measure(args: list[str]) -> tuple[float, Peak, str]:
    """Run the command; (seconds, peak memory, its standard error)."""
    peak, stop = Peak(), threading.Event()
    started = time.perf_counter()
    process = psutil.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    sampler = threading.Thread(target=sample, args=(process, peak, stop))
    sampler.start()
    _, err = process.communicate()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    if process.returncode not in (0, 1, 3):
        raise SystemExit(f"{args} failed ({process.returncode}):\n{err.decode()[-2000:]}")
    return seconds, peak, err.decode()


def export_for(folder: Path, patients: int) -> Path:
    path = folder / f"export-{patients}"
    if not (path / "Patient.ndjson").exists():
        started = time.perf_counter()
        write_population(path, patients)
        print(f"generated {patients} patients in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def parse_only(export: Path, patients: int) -> tuple[float, float]:
    """Patients per second for orjson parsing every line, and for msgspec decoding only what
    tells a line's patient (the floor of reading), on one core."""
    files = sorted(export.glob("*.ndjson"))
    started = time.perf_counter()
    for path in files:
        with path.open("rb") as lines:
            for line in lines:
                orjson.loads(line)
    full = time.perf_counter() - started

    class Head(msgspec.Struct):
        resourceType: object = None
        subject: object = None

    decoder = msgspec.json.Decoder(Head)
    started = time.perf_counter()
    for path in files:
        with path.open("rb") as lines:
            for line in lines:
                decoder.decode(line)
    head = time.perf_counter() - started
    return patients / full, patients / head


def profile(export: Path) -> None:
    """Where the in-process engine's time goes, by the module of each function (cumulative
    time of the top-level steps, own time by area)."""
    from anastrozole_cds.population import read_folder
    from anastrozole_cds.population.judging import evaluate_population
    from anastrozole_cds.population.writing import write_rows

    profiler = cProfile.Profile()
    profiler.enable()
    population, _ = read_folder(export, now=REFERENCE_NOW)
    with open("/dev/null", "w") as sink:
        write_rows(evaluate_population(population.patients(), now=REFERENCE_NOW), sink, "csv")
    profiler.disable()
    stats = pstats.Stats(profiler)
    areas: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        area = (
            "clinical core (evaluate)"
            if "/clinical/" in filename
            else "population: reading and grouping"
            if "/population/" in filename
            else "orjson/msgspec/gzip/io (builtins)"
        )
        areas[area] = areas.get(area, 0.0) + own
    total = sum(areas.values())
    print("\nown time by area (cProfile, one worker):")
    for area, seconds in sorted(areas.items(), key=lambda item: -item[1]):
        print(f"  {area:40} {seconds:7.2f} s  {100 * seconds / total:4.0f}%")
    print("\ntop functions by cumulative time:")
    stats.sort_stats("cumulative").print_stats(18)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/anastrozole-population"))
    parser.add_argument(
        "--engines", nargs="+", default=["in-process:1", "in-process:2", "spark:local[2]"]
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one in-process run")
    options = parser.parse_args()
    options.folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for patients in options.patients:
        export = export_for(options.folder, patients)
        size = sum(p.stat().st_size for p in export.glob("*.ndjson")) / 1e9
        if options.profile:
            profile(export)
            continue
        full, head = parse_only(export, patients)
        print(
            f"{patients}: orjson parse {full:,.0f}/s, msgspec head {head:,.0f}/s (one core)",
            flush=True,
        )
        for engine in options.engines:
            kind, _, setting = engine.partition(":")
            if kind == "spark":
                output = options.folder / f"out-{patients}"
                shutil.rmtree(output, ignore_errors=True)
                args = [
                    *COMMAND,
                    str(export),
                    "--engine",
                    "spark",
                    "--master",
                    setting,
                    "--output",
                    str(output),
                    "--now",
                    NOW,
                ]
            else:
                args = [
                    *COMMAND,
                    str(export),
                    "--workers",
                    setting,
                    "--output",
                    "/dev/null",
                    "--now",
                    NOW,
                ]
            seconds, peak, err = measure(args)
            summary = [line for line in err.splitlines() if line.startswith("evaluated")]
            rows.append((patients, size, engine, seconds, peak))
            print(
                f"{patients} {engine}: {seconds:.1f} s, {patients / seconds:,.0f} patients/s, "
                f"peak {peak.total / 1e6:,.0f} MB (JVM {peak.jvm / 1e6:,.0f}, Python workers "
                f"{peak.python_workers / 1e6:,.0f}); {summary[0][:90] if summary else ''}",
                flush=True,
            )
    if rows:
        print(
            "\n| patients | export | engine | time | patients/s | peak memory (tree) | JVM | Spark's Python workers |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for patients, size, engine, seconds, peak in rows:
            print(
                f"| {patients:,} | {size:.1f} GB | {engine} | {seconds:.1f} s | {patients / seconds:,.0f} | "
                f"{peak.total / 1e6:,.0f} MB | {peak.jvm / 1e6:,.0f} MB | {peak.python_workers / 1e6:,.0f} MB |"
            )


if __name__ == "__main__":
    main()
