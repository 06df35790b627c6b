"""`msm-eval labels`: human labelling sheets (export, import) and judge-human agreement with PPI estimates."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `labels` command group (export, import, agreement)."""
    parser = subparsers.add_parser("labels", help="human labels: export a sheet, import labels, agreement",
                                   description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="labels_command", metavar="SUBCOMMAND")
    export = sub.add_parser("export", help="draw a stratified labelling sheet (CSV + self-contained HTML) from logs")
    export.add_argument("logs", nargs="+", help="inspect logs or folders of judged runs")
    export.add_argument("--out", required=True, help="sheet folder to write")
    export.add_argument("--per-dimension", type=int, default=10, help="units to draw per dimension (default 10)")
    export.add_argument("--dimensions", default=None, help="comma-separated dimensions (default: all judged)")
    export.add_argument("--seed", type=int, default=0, help="random seed of the draw (default 0)")
    export.add_argument("--rubric", default="constitution", help="rubric shown to labellers (default constitution)")
    export.set_defaults(func=_export)
    imp = sub.add_parser("import", help="check a filled sheet CSV and add it to the sheet's labels.csv")
    imp.add_argument("sheet", help="sheet folder written by `labels export`")
    imp.add_argument("filled", help="filled CSV (from the HTML page or the edited sheet.csv)")
    imp.add_argument("--rater", default=None, help="rater name when the CSV has no rater column values")
    imp.set_defaults(func=_import)
    agree = sub.add_parser("agreement", help="judge-human agreement and prediction-powered means per dimension")
    agree.add_argument("sheet", help="sheet folder with imported labels")
    agree.add_argument("logs", nargs="*", help="the logs the sheet was drawn from (for the PPI table)")
    agree.add_argument("--out", required=True, help="output folder (agreement.md/.csv, ppi.md/.csv, calibration.json)")
    agree.add_argument("--by", default="run", help="grouping column of the PPI table (default run)")
    agree.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    agree.add_argument("--resamples", type=int, default=2_000, help="cluster-bootstrap resamples (default 2000)")
    agree.add_argument("--seed", type=int, default=0, help="random seed of the resampling (default 0)")
    agree.set_defaults(func=_agreement)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _export(args: argparse.Namespace) -> int:
    from msm_eval.labels import export_sheet

    dims = [d.strip() for d in args.dimensions.split(",") if d.strip()] if args.dimensions else None
    written = export_sheet(args.logs, args.out, per_dimension=args.per_dimension, dimensions=dims, seed=args.seed,
                           rubric=args.rubric)
    for kind, path in written.items():
        print(f"{kind:>10}: {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from msm_eval.labels import import_labels, load_labels

    path = import_labels(args.sheet, args.filled, rater=args.rater)
    labels = load_labels(args.sheet)
    print(f"{len(labels)} label(s) from {labels['rater'].nunique()} rater(s) in {path}")
    return 0


def _agreement(args: argparse.Namespace) -> int:
    from pathlib import Path

    from msm_eval.calibration import agreement_markdown, agreement_table, ppi_markdown, ppi_table
    from msm_eval.fileio import atomic_write_json, atomic_write_text
    from msm_eval.labels import load_labels
    from msm_eval.results import load, to_json_records, write_frame

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    agreement = agreement_table(load_labels(args.sheet), level=args.level, n_resamples=args.resamples, seed=args.seed)
    text = "# Judge vs human labels\n\n" + agreement_markdown(agreement, args.level)
    write_frame(agreement, out / "agreement.csv")
    payload = {"level": args.level, "agreement": to_json_records(agreement)}
    if args.logs:
        keys = [k.strip() for k in args.by.split(",") if k.strip()]
        table = ppi_table(load(args.logs), args.sheet, keys, level=args.level)
        text += "\n## Prediction-powered means\n\n" + ppi_markdown(table, keys, args.level)
        write_frame(table, out / "ppi.csv")
        payload["ppi"] = to_json_records(table)
    atomic_write_text(out / "calibration.md", text)
    atomic_write_json(out / "calibration.json", payload)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0
