"""``rivergraph`` command line: every subcommand; the only module that imports argparse.

:func:`build_parser` imports nothing heavy (no torch, numpy or pandas), so ``rivergraph --help`` answers at
once; each command imports what it needs when it runs. Bad input (ValueError, NetworkError, pydantic
ValidationError, KeyError) and file-system errors (missing file, a folder where a file was expected, a folder
that cannot be written: any OSError) become one line ``rivergraph: error: <reason>`` on stderr and exit code 2,
never a traceback. Ctrl-C prints one line ``rivergraph: interrupted ...`` (a command may set
``args.on_interrupt``, a callable returning how to resume) and exits 130, the shell's code for SIGINT.
Side effects (the transparent-huge-pages switch) happen in :func:`main`, not at import.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["main", "build_parser", "ddp_demo_main"]

_NET_HELP = "a dataset name (lower_colorado) or a network file for rivergraph.read_network"


# ------------------------------------------------------------------------------------------ commands
def _cmd_train(args) -> int:
    from .config.train import load_config
    from .runs.train import run_training

    cfg = load_config(args.config)
    if args.epochs is not None:
        cfg.training.epochs = args.epochs
    args.on_interrupt = lambda: _resume_hint(cfg, args.config)
    return run_training(cfg, resume=not args.no_resume)


def _resume_hint(cfg, config_path) -> str:
    """What Ctrl-C during ``rivergraph train`` leaves behind and how to go on (one line)."""
    from .training.trainer import load_checkpoint

    ck = cfg.checkpoint_path
    if not ck.is_file():
        return f"no epoch had finished, nothing saved; rerun 'rivergraph train {config_path}' to start again"
    try:
        epoch = load_checkpoint(ck).get("epoch", "?")
    except Exception:  # an unreadable checkpoint: say where it is all the same
        epoch = "?"
    return (f"epoch {epoch} is saved in {ck}; rerun 'rivergraph train {config_path}' to resume from it "
            "(--no-resume starts afresh)")


def _cmd_route(args) -> int:
    from .config.base import read_yaml_mapping
    from .runs.train import is_run_dir, route_run

    target = Path(args.target)
    if is_run_dir(target):
        return route_run(target)
    raw = read_yaml_mapping(target)
    if "runoff" in raw:
        from .config.route import RouteConfig
        from .runs.route import run_route

        cfg = RouteConfig.model_validate(raw)
        if args.steps is not None:
            cfg.period.steps, cfg.period.end = args.steps, None
        if args.chunk_size is not None:
            cfg.output.chunk_size = args.chunk_size
        if args.no_progress:
            cfg.output.progress = False
        run_route(cfg, base=target.resolve().parent)
        return 0
    # a training config: route with its run directory's checkpoint (as before run directories)
    from .config.train import TrainConfig
    from .runs.train import run_routing

    return run_routing(TrainConfig.model_validate(raw), checkpoint=args.checkpoint)


def _cmd_temperature(args) -> int:
    from .runs.temperature import run_temperature

    return run_temperature(args.config)


def _network(spec: str):
    from .datasets import resolve_network

    return resolve_network(spec)[0]


def _cmd_hydrograph(args) -> int:
    from .io.gauges import read_gauge_csv
    from .plots import informative_gauges, plot_hydrographs, save

    sim = read_gauge_csv(args.sim)
    obs = None
    if args.obs:
        from .datasets import is_dataset, load_dataset

        obs = load_dataset(args.obs)[1]["usgs_obs"] if is_dataset(args.obs) else read_gauge_csv(args.obs)
    gages = args.gages or informative_gauges(sim, obs)
    fig = plot_hydrographs(sim, obs, gages)
    how = "" if args.gages else (" (those with observations, largest mean observed flow first)" if obs is not None
                                 else " (largest mean simulated flow first)")
    print(f"hydrographs at {len(gages)} gauges{how} -> {save(fig, args.out)}")
    return 0


def _cmd_n_vs_area(args) -> int:
    from .plots import plot_n_vs_area, save, values_from_csv

    net = _network(args.network)
    n = values_from_csv(net, args.values, args.column) if args.values else None
    print(f"n vs drainage area for {len(net)} reaches -> {save(plot_n_vs_area(net, n), args.out)}")
    return 0


def _cmd_map(args) -> int:
    from .plots import plot_network_map, resolve_map_values, save, values_from_csv

    net = _network(args.network)
    if args.flow:
        values, label = resolve_map_values(net, args.flow, args.time, args.variable)
    elif args.values:
        values, label = values_from_csv(net, args.values, args.column), args.column
    else:
        values, label = args.column, args.column
    fig = plot_network_map(net, values, label, log=args.log)
    print(f"map of {label} on {len(net)} reaches -> {save(fig, args.out)}")
    return 0


def _cmd_training(args) -> int:
    import pandas as pd

    from .plots import plot_training, save

    p = Path(args.history)
    if not p.is_file():
        raise FileNotFoundError(f"training history {p} does not exist")
    if p.suffix in (".pt", ".pth", ".ckpt"):
        from .training import load_checkpoint

        df = pd.DataFrame(load_checkpoint(p)["history"])
    else:
        df = pd.read_json(p) if p.suffix == ".json" else pd.read_csv(p)
    print(f"training curves, {len(df)} epochs -> {save(plot_training(df), args.out)}")
    return 0


def _cmd_config_docs(args) -> int:
    from .config.docs import main as docs_main

    return docs_main((["--check"] if args.check else []) + ([args.path] if args.path else []))


def _cmd_ddp_demo(args) -> int:
    from .training.distributed import run_ddp_demo

    return run_ddp_demo(gauges=args.gauges, min_reaches=args.min_reaches, steps=args.steps, epochs=args.epochs,
                        batch_size=args.batch_size, batches_per_step=args.batches_per_step, lr=args.lr,
                        loss=args.loss, seed=args.seed, float64=args.float64, checkpoint=args.checkpoint,
                        resume=args.resume, progress=not args.no_progress, val_gauges=args.val_gauges,
                        patience=args.patience)


# -------------------------------------------------------------------------------------------- parser
def _add_run_commands(sub) -> None:
    p = sub.add_parser("train", help="train a parameter network through the router (writes a run directory)",
                       description="Train a parameter network (attributes -> Manning's n ...) through the "
                                   "Muskingum-Cunge router against gauges, as set in CONFIG.yaml; writes the run "
                                   "directory output.dir (config.yml, checkpoint, summary, parameters, figures).")
    p.add_argument("config", help="YAML configuration file (docs/config.md)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    p.set_defaults(func=_cmd_train)

    r = sub.add_parser("route", help="route runoff on a network (a route config or a trained run directory)",
                       description="Route lateral inflow: TARGET is a route config (network, runoff, mapping, "
                                   "routing, period, state, output; docs/config.md), a run directory written by "
                                   "'rivergraph train', or a training config (its checkpoint). Streams in time "
                                   "chunks; writes CF discharge, a gauge CSV and summary.json.")
    r.add_argument("target", help="route config YAML, run directory, or training config YAML")
    r.add_argument("--checkpoint", default=None, help="training config only: checkpoint to use")
    r.add_argument("--steps", type=int, default=None, help="route config only: override period.steps")
    r.add_argument("--chunk-size", type=int, default=None, help="route config only: override output.chunk_size")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_route)

    t = sub.add_parser("temperature", help="route discharge and stream temperature on the network a config names",
                       description="Route the lateral inflow of the network CONFIG.yaml names (a dataset, an NWM "
                                   "Route_Link or NHM network file) and compute water temperature per reach (heat "
                                   "transport with surface exchange; forcing: synthetic weather, a netCDF file or "
                                   "PRMS-SNTemp drivers; docs/temperature.md); writes temperature.nc (CF) and "
                                   "temperature.png.")
    t.add_argument("config", help="YAML configuration file (e.g. examples/temperature_lower_colorado.yaml)")
    t.set_defaults(func=_cmd_temperature)

    c = sub.add_parser("config-docs", help="write docs/config.md from the config schemas",
                       description="Write (or --check) the configuration reference generated from the schemas.")
    c.add_argument("path", nargs="?", default=None, help="output file (default: docs/config.md of the checkout)")
    c.add_argument("--check", action="store_true", help="exit 1 if the file is not current")
    c.set_defaults(func=_cmd_config_docs)

    d = sub.add_parser("ddp-demo", help="data-parallel (DDP) training demo on Lower Colorado gauge sub-networks",
                       description="Data-parallel (DDP) training of Manning's n on Lower Colorado gauge sub-networks "
                                   "(real NWM inflow, twin observations). Launch with torchrun (python -m "
                                   "torch.distributed.run ... -m rivergraph.training.distributed); without it, runs "
                                   "as one process.")
    d.add_argument("--gauges", type=int, default=8, help="number of gauged basins (the smallest with inflow and >= "
                                                         "--min-reaches reaches first)")
    d.add_argument("--val-gauges", type=int, default=0, help="further basins held out for validation (the next "
                                                             "smallest; early stopping on them)")
    d.add_argument("--patience", type=int, default=None, help="early-stopping patience (default: --epochs, i.e. off)")
    d.add_argument("--min-reaches", type=int, default=20, help="smallest gauged basin used (reaches)")
    d.add_argument("--steps", type=int, default=28, help="hourly forcing steps (<= 28)")
    d.add_argument("--epochs", type=int, default=2, help="epochs")
    d.add_argument("--batch-size", type=int, default=1, help="gauges per mini-batch")
    d.add_argument("--batches-per-step", type=int, default=4, help="mini-batches per optimiser step (all ranks)")
    d.add_argument("--lr", type=float, default=0.01, help="learning rate")
    d.add_argument("--loss", choices=["l1", "nse", "kge"], default="l1",
                   help="loss per gauge (l1: mean absolute error / mean flow; defined for near-constant flow)")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--float64", action="store_true", help="train in float64")
    d.add_argument("--checkpoint", default=None, help="checkpoint file written by rank 0 after every epoch")
    d.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_ddp_demo)


def _add_plot_commands(sub) -> None:
    p = sub.add_parser("plot", help="figures: hydrographs, n vs area, network maps, training curves",
                       description="Draw a figure to a file (.png, .pdf, .svg).")
    fig = p.add_subparsers(dest="plot", metavar="FIGURE", required=True)
    h = fig.add_parser("hydrograph", help="simulated vs observed discharge at gauges",
                       description="Hydrographs at gauges from a gauge CSV (rivergraph route / train / route_to_file).")
    h.add_argument("--sim", required=True, help="simulated gauge CSV (time, gage, reach_id, discharge_m3s)")
    h.add_argument("--obs", default=None, help="observed: a dataset name (lower_colorado: shipped USGS) or a gauge "
                                               "CSV (time, gage, discharge_m3s)")
    h.add_argument("--gages", nargs="+", default=None,
                   help="gauge ids (default: 12 with observations, largest mean observed flow first)")
    h.add_argument("--out", required=True, help="figure file")
    h.set_defaults(func=_cmd_hydrograph)

    n = fig.add_parser("n-vs-area", help="Manning's n against drainage area",
                       description="Scatter of Manning's n against drainage area with a power-law fit.")
    n.add_argument("--network", default="lower_colorado", help=_NET_HELP)
    n.add_argument("--values", default=None, help="CSV of learned values (reach_id + --column); default: the "
                                                  "network's n column")
    n.add_argument("--column", default="n", help="column of --values (default n)")
    n.add_argument("--out", required=True, help="figure file")
    n.set_defaults(func=_cmd_n_vs_area)

    m = fig.add_parser("map", help="map of a parameter or discharge over the network",
                       description="Colour the network's reaches by an attribute column, a CSV of values, or a "
                                   "variable of a rivergraph output (.nc/.zarr) at one time.")
    m.add_argument("--network", default="lower_colorado", help=_NET_HELP)
    m.add_argument("--column", default="n", help="attribute column (or column of --values) to map")
    m.add_argument("--values", default=None, help="CSV with reach_id and --column")
    m.add_argument("--flow", default=None, help="rivergraph output (.nc/.zarr) to map a variable from")
    m.add_argument("--variable", default="streamflow", help="variable of --flow (default streamflow)")
    m.add_argument("--time", default=None, help="time (UTC) to map from --flow (default: the last)")
    m.add_argument("--log", action="store_true", help="logarithmic colour scale")
    m.add_argument("--out", required=True, help="figure file")
    m.set_defaults(func=_cmd_map)

    t = fig.add_parser("training", help="training loss curves",
                       description="Loss per epoch from a training checkpoint (.pt) or a history CSV/JSON.")
    t.add_argument("history", help="checkpoint .pt (its history) or CSV/JSON with epoch, train_loss, ...")
    t.add_argument("--out", required=True, help="figure file")
    t.set_defaults(func=_cmd_training)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand (imports nothing heavy)."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="rivergraph",
        description="Graph-based, differentiable river network routing (Muskingum-Cunge) and stream temperature.")
    parser.add_argument("--version", action="version", version=f"rivergraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run_commands(sub)
    _add_plot_commands(sub)
    return parser


def _error_message(exc: BaseException) -> str:
    """One line naming what was wrong (pydantic errors are flattened to 'field: message; ...')."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and type(exc).__name__ == "ValidationError":
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{loc}: {e.get('msg', '')}" if loc else str(e.get("msg", "")))
        title = getattr(exc, "title", "config")
        return f"invalid {title}: " + "; ".join(parts)
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename and len(exc.args) == 2:
        return f"{exc.filename}: {exc.strerror}"  # e.g. open() on a folder: the user's path, not an errno line
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None, prog_error: str = "rivergraph") -> int:
    """Run the command line; returns the exit code (0 on success)."""
    # PyTorch's CPU allocator backs tensors >= 2 MB with transparent huge pages when this is set (read at the first
    # allocation): routing fills fresh [T, N] arrays, and page faults on them cost ~20% of a large run
    # (docs/routing.md). Export THP_MEM_ALLOC_ENABLE=0 to opt out.
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    from pydantic import ValidationError

    from .graph.network import NetworkError

    try:
        return int(args.func(args) or 0)
    except (ValueError, NetworkError, OSError, KeyError, ValidationError) as exc:
        print(f"{prog_error}: error: {_error_message(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = getattr(args, "on_interrupt", None)
        hint = hint() if callable(hint) else hint
        print(f"{prog_error}: interrupted" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 130


def ddp_demo_main(argv: Sequence[str] | None = None) -> int:
    """``python -m rivergraph.training.distributed [...]`` = ``rivergraph ddp-demo [...]``."""
    return main(["ddp-demo", *(sys.argv[1:] if argv is None else argv)], prog_error="rivergraph.training.distributed")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
