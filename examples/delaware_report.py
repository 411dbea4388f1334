"""Aggregate the Delaware real-gauge runs (examples/configs/delaware_real*.yaml, one run dir per seed) into the
tables and figures of docs/training.md ("Delaware River Basin").

    python examples/delaware_report.py RUN_DIR [RUN_DIR ...] --lstm RUN_DIR --figures docs/figures

Prints markdown tables (medians across gauges; mean and range across seeds), the learned-n power law per seed
(all reaches upstream of training gauges, and the identifiable ones), per-gauge held-out scores, and writes figures.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from rivergraph.training import fit_power_law

LABEL = {"reference": "(i) PRMS routed (seg_outflow)", "network_n": "(ii) rivergraph, NHM n",
         "learned": "(iii) rivergraph, learned n"}


def medians(run: Path) -> pd.DataFrame:
    t = pd.read_csv(run / "split_scores.csv", dtype={"gage": str})
    return t.groupby(["model", "gauges", "period"])[["nse", "kge", "volume_ratio"]].median()


def table(runs: list[Path]) -> str:
    m = [medians(r) for r in runs]
    keys = m[0].index
    lines = ["| model | gauges | period | median NSE | median KGE | median volume ratio |", "|---|---|---|---|---|---|"]
    order = sorted(keys, key=lambda k: (k[1] != "holdout", k[2] != "test", ["reference", "network_n",
                                                                            "learned"].index(k[0])))
    for k in order:
        v = np.array([[x.loc[k, c] for c in ("nse", "kge", "volume_ratio")] for x in m])
        def f(j):
            return f"{v[:, j].mean():.3f}" + (f" ({v[:, j].min():.3f}-{v[:, j].max():.3f})" if len(runs) > 1 and
                                             k[0] == "learned" else "")
        lines.append(f"| {LABEL[k[0]]} | {k[1]} | {k[2]} | {f(0)} | {f(1)} | {f(2)} |")
    return "\n".join(lines)


def power_laws(runs: list[Path]) -> str:
    lines = ["| run | reaches | n = a A^b: a | b | identifiable reaches | a | b | n range (5-95%) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        p = pd.read_csv(r / "parameters.csv")
        s = json.loads((r / "summary.json").read_text())
        A, n, sens = p["drainage_area_km2"].to_numpy(), p["n"].to_numpy(), p["n_sensitivity"].to_numpy()
        up = sens > 0
        a, b = fit_power_law(A[up], n[up])
        lines.append(f"| {r.name} | {int(up.sum())} | {a:.4f} | {b:.3f} | {s['identifiable_reaches']} | "
                     f"{s['fit_prefactor_identifiable']:.4f} | {s['fit_exponent_identifiable']:.3f} | "
                     f"{np.quantile(n[up], 0.05):.3f}-{np.quantile(n[up], 0.95):.3f} |")
    return "\n".join(lines)


def per_gauge(runs: list[Path]) -> str:
    t = pd.concat([pd.read_csv(r / "split_scores.csv", dtype={"gage": str}).assign(run=r.name) for r in runs])
    h = t[(t.gauges == "holdout") & (t.period == "test")]
    w = h.groupby(["gage", "model"])[["nse", "kge", "volume_ratio"]].mean().unstack("model")
    lines = ["| gauge | NSE PRMS | NSE NHM n | NSE learned | KGE PRMS | KGE NHM n | KGE learned | volume ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for g, row in w.sort_values(("nse", "learned"), ascending=False).iterrows():
        lines.append(f"| {g} | {row[('nse', 'reference')]:.2f} | {row[('nse', 'network_n')]:.2f} | "
                     f"{row[('nse', 'learned')]:.2f} | {row[('kge', 'reference')]:.2f} | "
                     f"{row[('kge', 'network_n')]:.2f} | {row[('kge', 'learned')]:.2f} | "
                     f"{row[('volume_ratio', 'learned')]:.2f} |")
    return "\n".join(lines)


def figures(runs: list[Path], lstm: Path | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    a_ = np.logspace(-1, 4.6, 50)
    for i, r in enumerate(runs):
        p = pd.read_csv(r / "parameters.csv")
        up = p["n_sensitivity"].to_numpy() > 0
        A, n = p["drainage_area_km2"].to_numpy(), p["n"].to_numpy()
        ax.scatter(A[up], n[up], s=4, color=f"C{i}", alpha=0.5)
        a, b = fit_power_law(A[up], n[up])
        ax.plot(a_, a * a_ ** b, color=f"C{i}", label=f"{r.name}: n = {a:.3f} A^{b:.3f}")
    p = pd.read_csv(runs[0] / "parameters.csv")
    ax.plot(a_, 0.0915 * a_ ** -0.131, "k--", label="dMC / Bindas et al. 2024: 0.0915 A^-0.131")
    from rivergraph.io.nhm import read_nhm

    net = read_nhm(Path(__file__).resolve().parents[1].parent / "shared/data/delaware_nhm_2yr/raw")
    ax.scatter(net.attr("drainage_area_km2"), net.attr("n"), s=3, c="0.6", marker="x", label="NHM mann_n")
    ax.set(xscale="log", yscale="log", xlabel="drainage area (km2)", ylabel="Manning's n (s m^-1/3)",
           title="Delaware: learned n (reaches upstream of training gauges)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "delaware_n_vs_area.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, r in enumerate(runs + ([lstm] if lstm else [])):
        h = json.loads((r / "summary.json").read_text())["history"]
        ax.plot([x["epoch"] for x in h], [x["train_loss"] for x in h], marker="o", color=f"C{i}", label=r.name)
    ax.set(xlabel="epoch", ylabel="training loss (mean 1 - daily NSE, 1979)", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "delaware_training_curves.png", dpi=110)
    plt.close(fig)
    for r, tag in [(runs[0], "nhm"), (lstm, "lstm")]:
        if r is None:
            continue
        for f in ("hydrographs_holdout.png", "n_vs_latitude.png"):
            if (r / f).is_file():
                shutil.copy(r / f, out / f"delaware_{tag}_{f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--lstm", type=Path, default=None)
    ap.add_argument("--figures", type=Path, default=None)
    a = ap.parse_args()
    print("## PRMS lateral inflow\n" + table(a.runs) + "\n")
    print(power_laws(a.runs + ([a.lstm] if a.lstm else [])) + "\n")
    print("## held-out gauges, test year (mean over seeds)\n" + per_gauge(a.runs) + "\n")
    if a.lstm:
        print("## LSTM lateral inflow\n" + table([a.lstm]) + "\n")
    if a.figures:
        figures(a.runs, a.lstm, a.figures)


if __name__ == "__main__":
    main()
