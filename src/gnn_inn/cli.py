"""The ``gnn-inn`` command.

```
gnn-inn train --config FILE [FILE ...] [--set key=value ...] [--out DIR] [--data-dir DIR]
              [--resume | --overwrite]
gnn-inn config FILE [FILE ...] [--set key=value ...]         (print the resolved config)
torchrun --standalone --nproc_per_node N -m gnn_inn.cli train ...  (data-parallel training)
gnn-inn evaluate CHECKPOINT [--split test]
gnn-inn stats DATASET [--data-dir DIR]
gnn-inn rules DATASET [--min-confidence C] [--min-support S] [--min-head-coverage H] [--top K]
gnn-inn predict CHECKPOINT --head H --relation R [--k 10]     (or --tail T for head queries)
gnn-inn certify CHECKPOINT                                    (flow decoders: invertibility)
gnn-inn sample CHECKPOINT --head H --relation R [--n 20] [--seed 0]  (stochastic decoders)
gnn-inn plot RUN_DIR [--out FILE.png]                 (training curves from metrics.jsonl)
gnn-inn export CHECKPOINT [--out DIR]                 (embeddings: .npy, .tsv, projector)
```
Results go to stdout as JSON (``train`` prints the test metrics as its last line); logs and
progress bars go to stderr. Errors are one line ``gnn-inn <command>: error: ...`` on stderr
with exit code 2 (the traceback too with ``-v``). Checkpoints load with tensors and plain
values only; ``--trust-checkpoint`` loads a file you trust that needs more (it may run code).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from . import __version__


def _json(obj, **kwargs) -> str:
    """Strict JSON (no NaN / Infinity: non-finite numbers become ``null``)."""
    from .training.checkpoint import finite_or_none

    return json.dumps(finite_or_none(obj), allow_nan=False, **kwargs)


def _fmt(metrics: dict) -> str:
    return _json({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()})


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {v}")
    return v


def non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {v}")
    return v


def positive_float(text: str) -> float:
    v = float(text)
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def cmd_train(args) -> int:
    from .config import Config
    from .training.run_dir import check_run_dir, clear_run_files, run_lock

    config = Config.load(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / "+".join(Path(c).stem
                                                                 for c in args.config)
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 owns the folder
        return _train(args, config, out)
    check_run_dir(out, resume=args.resume, overwrite=args.overwrite)
    with run_lock(out):
        if args.overwrite:
            gone = clear_run_files(out)
            if gone:
                logging.info("--overwrite: removed %s from %s", ", ".join(gone), out)
        return _train(args, config, out)


def _train(args, config, out: Path) -> int:
    from .training import trainer_from_config
    from .training.run_dir import trim_metrics

    trainer = trainer_from_config(config, data_dir=args.data_dir, out_dir=out, quiet=args.quiet)
    if args.resume:
        last = out / "last.pt"
        if last.is_file():
            trainer.resume(last, trusted=args.trust_checkpoint)
            if trainer.dist.is_main and trim_metrics(out, trainer.epoch):
                logging.info("--resume: dropped metrics.jsonl lines after epoch %d",
                             trainer.epoch)
        else:
            logging.warning("--resume: no %s yet, starting from scratch", last)
    kg = trainer.kg
    logging.info("dataset %s: %d entities, %d relations, %d train triples; %d parameters",
                 kg.name, kg.num_entities, kg.num_relations, kg.train.shape[0],
                 trainer.model.num_parameters())
    res = trainer.fit()
    trainer.dist.close()  # torchrun: leave the process group; only rank 0 reports
    if not trainer.dist.is_main:
        return 0
    if "test_per_pattern" in res:
        print("per-pattern test metrics:")
        for name, m in res["test_per_pattern"].items():
            print(f"  {name:<16} MRR {m['mrr']:.3f}  H@1 {m['hits@1']:.3f}  "
                  f"H@10 {m['hits@10']:.3f}")
    print(f"results written to {out / 'results.json'} "
          f"({res['epochs']} epochs, {res['train_seconds']:.1f} s)")
    print(_fmt(res["test"]))
    return 0


def cmd_config(args) -> int:
    """Print the settings a run of these config files would use (bases, files and ``--set``
    merged, defaults filled in) as YAML."""
    from .config import Config, dump_yaml

    sys.stdout.write(dump_yaml(Config.load(args.configs, args.set)))
    return 0


def cmd_evaluate(args) -> int:
    from .training import Trainer, load_trained

    model, kg, config = load_trained(args.checkpoint, data_dir=args.data_dir,
                                     trusted=args.trust_checkpoint)
    trainer = Trainer(model=model, kg=kg, config=config, quiet=True)
    res = trainer.evaluate(args.split)
    print(_fmt(res.metrics()))
    return 0


def cmd_stats(args) -> int:
    from .data import load_dataset

    kg = load_dataset(args.dataset, data_dir=args.data_dir)
    print(_json({"dataset": kg.name, **kg.stats()}, indent=2))
    return 0


def cmd_rules(args) -> int:
    """Composition rules ``r3(x,z) <= b1(x,y) ∧ b2(y,z)`` mined from the training triples, best
    first, and the ones ``patterns: auto`` of a flow decoder would adopt."""
    import time

    from .data import load_dataset
    from .data.rules import mine_rules
    from .decoders.patterns import adopt_compositions, infer_patterns

    for name, v, lo in (("--min-confidence", args.min_confidence, 0.0),
                        ("--min-head-coverage", args.min_head_coverage, 0.0),
                        ("--adopt-confidence", args.adopt_confidence, 0.0),
                        ("--adopt-head-coverage", args.adopt_head_coverage, 0.0)):
        if not lo <= v <= 1.0:
            raise ValueError(f"rules: {name} must be in [0, 1], got {v}")
    if args.min_support < 1 or args.top < 0:
        raise ValueError(f"rules: --min-support must be ≥ 1 and --top ≥ 0, got "
                         f"{args.min_support} and {args.top}")
    kg = load_dataset(args.dataset, data_dir=args.data_dir)
    t0 = time.perf_counter()
    rules = mine_rules(kg.train, kg.num_relations, kg.num_entities,
                       min_support=args.min_support, min_head_coverage=args.min_head_coverage,
                       min_confidence=args.min_confidence)
    seconds = time.perf_counter() - t0
    # what `patterns: auto` adopts: symmetric / inverse patterns first, then the rules
    pats = infer_patterns(kg.train, kg.num_relations)
    adopted = adopt_compositions(pats, rules, kg.num_relations,
                                 confidence=args.adopt_confidence,
                                 head_coverage=args.adopt_head_coverage,
                                 min_support=args.min_support)
    names = kg.relation_names
    print(json.dumps({
        "dataset": kg.name, "num_rules": len(rules), "mining_seconds": round(seconds, 3),
        "thresholds": {"min_support": args.min_support, "min_confidence": args.min_confidence,
                       "min_head_coverage": args.min_head_coverage},
        "rules": [q.as_dict(names) for q in rules[: args.top]],
        "adopted_by_auto": {"confidence": args.adopt_confidence,
                            "head_coverage": args.adopt_head_coverage,
                            "rules": [q.as_dict(names) for q in adopted]},
    }, indent=2, ensure_ascii=False))
    return 0


def cmd_predict(args) -> int:
    import torch

    from .training import load_trained

    if (args.head is None) == (args.tail is None):
        raise ValueError("give exactly one of --head (tail query) or --tail (head query)")
    model, kg, _ = load_trained(args.checkpoint, data_dir=args.data_dir,
                                trusted=args.trust_checkpoint)
    ent_id = {n: i for i, n in enumerate(kg.entity_names)}
    rel_id = {n: i for i, n in enumerate(kg.relation_names)}
    anchor_name = args.head if args.head is not None else args.tail
    for name, table, what in ((anchor_name, ent_id, "entity"), (args.relation, rel_id, "relation")):
        if name not in table:
            raise ValueError(f"unknown {what} {name!r} (not in the dataset's vocabulary)")
    a = torch.tensor([ent_id[anchor_name]])
    r = torch.tensor([rel_id[args.relation]])
    with torch.no_grad():
        if args.head is not None:
            scores = model.score_tails(a, r)[0]
            known = set(kg.train[(kg.train[:, 0] == a) & (kg.train[:, 1] == r)][:, 2].tolist())
        else:
            scores = model.score_heads(r, a)[0]
            known = set(kg.train[(kg.train[:, 2] == a) & (kg.train[:, 1] == r)][:, 0].tolist())
    top = torch.topk(scores.float(), min(args.k, scores.numel()))
    query = (f"({anchor_name}, {args.relation}, ?)" if args.head is not None
             else f"(?, {args.relation}, {anchor_name})")
    rows = [{"rank": i + 1, "entity": kg.entity_names[e], "score": round(float(s), 6),
             "known_train_answer": e in known}
            for i, (s, e) in enumerate(zip(top.values.tolist(), top.indices.tolist()))]
    print(_json({"query": query, "answers": rows}, indent=2))
    return 0


def cmd_certify(args) -> int:
    from .decoders.certificate import certify
    from .training import load_trained

    model, _, _ = load_trained(args.checkpoint, data_dir=args.data_dir,
                               trusted=args.trust_checkpoint)
    cert = certify(model, per_relation=args.per_relation, jacobian_samples=args.samples)
    results = Path(args.checkpoint).with_name("results.json")
    if results.is_file():
        try:
            data = json.loads(results.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{results}: not valid JSON ({e}); the certificate is not added"
                             ) from None
        data["certificate"] = cert
        results.write_text(_json(data, indent=2) + "\n", encoding="utf-8")
    print(_json(cert, indent=2))
    return 0


def cmd_sample(args) -> int:
    """Sample answers of one query from a stochastic decoder: the entities nearest to ``n``
    sampled points, with frequencies, beside the known answers of train / valid / test."""
    from collections import Counter

    import torch

    from .training import load_trained

    if (args.head is None) == (args.tail is None):
        raise ValueError("give exactly one of --head (tail query) or --tail (head query)")
    model, kg, _ = load_trained(args.checkpoint, data_dir=args.data_dir,
                                trusted=args.trust_checkpoint)
    dec = model.decoder
    if not dec.samples_entities:
        raise ValueError(f"decoder {type(dec).__name__} is deterministic and cannot sample; "
                         "use a 'stochastic_flow' checkpoint (or 'predict' for a ranking)")
    ent_id = {n: i for i, n in enumerate(kg.entity_names)}
    rel_id = {n: i for i, n in enumerate(kg.relation_names)}
    anchor_name = args.head if args.head is not None else args.tail
    for name, table, what in ((anchor_name, ent_id, "entity"), (args.relation, rel_id, "relation")):
        if name not in table:
            raise ValueError(f"unknown {what} {name!r} (not in the dataset's vocabulary)")
    direction = "tail" if args.head is not None else "head"
    a, r = ent_id[anchor_name], rel_id[args.relation]
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        ent, rel = model.encode()
        dev = ent.device
        ids = dec.sample_entities(ent, rel, torch.tensor([a], device=dev),
                                  torch.tensor([r], device=dev), args.n, g, direction=direction,
                                  temperature=args.temperature)[0]
    known: dict[int, list[str]] = {}
    for split in ("train", "valid", "test"):
        tr = getattr(kg, split)
        if direction == "tail":
            hit = tr[(tr[:, 0] == a) & (tr[:, 1] == r)][:, 2]
        else:
            hit = tr[(tr[:, 2] == a) & (tr[:, 1] == r)][:, 0]
        for e in hit.tolist():
            known.setdefault(e, []).append(split)
    counts = Counter(ids.tolist())
    hits = [{"entity": kg.entity_names[e], "count": c, "frequency": round(c / args.n, 6),
             "true_answer": e in known}
            for e, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    answers = [{"entity": kg.entity_names[e], "splits": sp, "sampled": e in counts}
               for e, sp in sorted(known.items())]
    query = (f"({anchor_name}, {args.relation}, ?)" if direction == "tail"
             else f"(?, {args.relation}, {anchor_name})")
    print(_json({
        "query": query, "n": args.n, "seed": args.seed, "temperature": args.temperature,
        "distinct": len(hits), "samples": hits,
        "true_answers": answers,
        "recall": round(sum(a["sampled"] for a in answers) / len(answers), 6) if answers else None,
    }, indent=2))
    return 0


def cmd_plot(args) -> int:
    from .training.plot import plot_run

    out = plot_run(args.run_dir, args.out)
    print(_json({"plot": str(out)}))
    return 0


def cmd_export(args) -> int:
    from .export import export_embeddings
    from .training import load_trained

    model, kg, _ = load_trained(args.checkpoint, data_dir=args.data_dir,
                                trusted=args.trust_checkpoint)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "embeddings"
    summary = export_embeddings(model, kg.entity_names, kg.relation_names, out)
    print(_json(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gnn-inn", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"gnn-inn {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("--config", required=True, action="extend", nargs="+", metavar="FILE",
                   help="YAML config file; several (or --config repeated) merge in order")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=0.01 (repeatable)")
    t.add_argument("--out", help="output folder (default runs/<config name>)")
    t.add_argument("--data-dir", help="folder holding <dataset.name>/{train,valid,test}.txt "
                                      "(a registered name or any other folder name)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run in OUT (its checkpoints, metrics and results)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train)

    cf = sub.add_parser("config", help="print the resolved config as YAML")
    cf.add_argument("configs", nargs="+", metavar="CONFIG",
                    help="YAML config files, merged in order")
    cf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable)")
    cf.set_defaults(func=cmd_config)

    e = sub.add_parser("evaluate", help="filtered ranking metrics of a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--split", default="test", choices=["train", "valid", "test"])
    e.add_argument("--data-dir")
    e.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("stats", help="dataset statistics as JSON")
    s.add_argument("dataset", help="registered name or a folder with train/valid/test.txt")
    s.add_argument("--data-dir")
    s.set_defaults(func=cmd_stats)

    ru = sub.add_parser("rules", help="composition rules mined from the training triples")
    ru.add_argument("dataset", help="registered name or a folder with train/valid/test.txt")
    ru.add_argument("--min-support", type=int, default=10,
                    help="least number of distinct head pairs the body explains")
    ru.add_argument("--min-confidence", type=float, default=0.5, help="least PCA confidence")
    ru.add_argument("--min-head-coverage", type=float, default=0.01)
    ru.add_argument("--top", type=int, default=50, help="print the best K rules")
    ru.add_argument("--adopt-confidence", type=float, default=0.9,
                    help="PCA confidence from which patterns: auto ties a relation")
    ru.add_argument("--adopt-head-coverage", type=float, default=0.5,
                    help="head coverage from which patterns: auto ties a relation")
    ru.add_argument("--data-dir")
    ru.set_defaults(func=cmd_rules)

    pr = sub.add_parser("predict", help="top-k answers of one query")
    pr.add_argument("checkpoint")
    pr.add_argument("--head", help="head entity name: predict tails")
    pr.add_argument("--tail", help="tail entity name: predict heads")
    pr.add_argument("--relation", required=True)
    pr.add_argument("--k", type=positive_int, default=10, help="number of answers (≥ 1)")
    pr.add_argument("--data-dir")
    pr.set_defaults(func=cmd_predict)

    c = sub.add_parser("certify", help="invertibility certificate of a flow-decoder checkpoint")
    c.add_argument("checkpoint")
    c.add_argument("--per-relation", type=positive_int, default=256,
                   help="entity embeddings sampled per relation for the round trips")
    c.add_argument("--samples", type=non_negative_int, default=16,
                   help="log-det checks against autograd")
    c.add_argument("--data-dir")
    c.set_defaults(func=cmd_certify)

    sm = sub.add_parser("sample", help="sampled answers of one query (stochastic decoders)")
    sm.add_argument("checkpoint")
    sm.add_argument("--head", help="head entity name: sample tails")
    sm.add_argument("--tail", help="tail entity name: sample heads (the mirror model)")
    sm.add_argument("--relation", required=True)
    sm.add_argument("--n", type=positive_int, default=20, help="number of samples")
    sm.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    sm.add_argument("--temperature", type=positive_float, default=1.0,
                    help="base-distribution scale T (z ~ N(0, T²I)); < 1: fewer, likelier "
                         "answers")
    sm.add_argument("--data-dir")
    sm.set_defaults(func=cmd_sample)

    pl = sub.add_parser("plot", help="training curves of a run folder as a PNG")
    pl.add_argument("run_dir", help="run folder (holding metrics.jsonl) or the metrics file")
    pl.add_argument("--out", help="PNG file to write (default RUN_DIR/curves.png)")
    pl.set_defaults(func=cmd_plot)

    ex = sub.add_parser("export", help="entity / relation embeddings as .npy and TSV, with "
                                       "metadata for the TensorBoard projector")
    ex.add_argument("checkpoint")
    ex.add_argument("--out", help="output folder (default: embeddings/ beside the checkpoint)")
    ex.add_argument("--data-dir")
    ex.set_defaults(func=cmd_export)
    for sp in (t, e, pr, c, sm, ex):
        sp.add_argument("--trust-checkpoint", action="store_true",
                        help="load the checkpoint even if it holds more than tensors and plain "
                             "values (its pickle may run code): only for files you trust")
    return p


def _message(e: BaseException) -> str:
    """One line naming the cause (and the file, for OS errors)."""
    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or e}"
        if e.filename2 is not None:
            text += f" ({e.filename2})"
    else:
        text = str(e) or type(e).__name__
        from .training.guards import NonFiniteError

        if not isinstance(e, (ValueError, FileNotFoundError, NonFiniteError)):
            text = f"{type(e).__name__}: {text}"
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"gnn-inn {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure: one line, the traceback with -v
        if args.verbose:
            traceback.print_exc()
        print(f"gnn-inn {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
