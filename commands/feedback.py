"""The feedback feature's commands: ``cxhub cases`` / ``cxhub case ...`` (commands.cases), and

- ``cxhub feedback judge``: the configured detector on JSON lines (stdin), ``--report`` for figures;
- ``cxhub feedback verdict CASE not-negative|wrong-topic`` and ``cxhub feedback missed TOUCHPOINT``:
  staff's word on the detector, kept as labelled examples;
- ``cxhub feedback drivers``: the top negative topics per store and week;
- ``cxhub model train | eval | list | rollback``: versions of the feedback model.
"""

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

import commands
from commands.cases import register as register_cases
from hub.registry import with_dependencies


def _feedback_config(config: Path | None) -> tuple[Any, Path | None]:
    """The config's feedback section (defaults when no config file is given or found)."""
    from hub.features.feedback.config import FeedbackConfig

    if config is None and not os.environ.get("CXHUB_CONFIG") and not Path("cxhub.yaml").exists():
        return FeedbackConfig(), None
    cfg = commands.load(config)
    section = cfg.section("feedback")
    return (section if isinstance(section, FeedbackConfig) else FeedbackConfig()), cfg.base_dir


def _versions(cfg: Any, base: Path | None) -> Any:
    from hub.features.feedback.versions import ModelVersions

    if not cfg.sentiment.model_dir:
        raise commands.fail(
            "feedback.sentiment.model_dir is not set: name a folder for model versions in the config "
            "(e.g. `feedback: {sentiment: {model_dir: models}}`)"
        )
    root = Path(cfg.sentiment.model_dir)
    return ModelVersions(root if root.is_absolute() or base is None else base / root)


def _print_comparison(result: Any) -> None:
    from rich.table import Table

    table = Table("set", "model", "n", "precision", "recall", "F1", "false alarms")
    for name, pair in result.sets.items():
        for who in ("current", "candidate"):
            f = pair[who]
            label = f"{who} {result.current if who == 'current' else result.candidate}"
            table.add_row(
                name,
                label,
                str(f["labelled"]),
                f"{f['precision']:.3f}",
                f"{f['recall']:.3f}",
                f"{f['f1']:.3f}",
                f"{f['false_alarm_rate']:.3f}" if "false_alarm_rate" in f else "-",
            )
    commands.console.print(table)
    commands.console.print(("better: " if result.better else "not better: ") + result.why, highlight=False)


def _taxonomy(cfg: Any, base: Path | None) -> Any:
    """The configured topic taxonomy (a relative file is read beside the config)."""
    from hub.features.feedback.topics import load_taxonomy

    path = Path(cfg.topics.taxonomy) if cfg.topics.taxonomy else None
    if path is not None and not path.is_absolute() and base is not None:
        path = base / path
    return load_taxonomy(path, cfg.topics.extra)


def register(app: typer.Typer) -> None:
    """Add the feedback feature's commands to the ``cxhub`` app."""
    from commands import ConfigOpt, JsonOpt

    register_cases(app)
    fb_app = typer.Typer(help="Negative-feedback detection: judge texts, staff verdicts, topic drivers.")
    app.add_typer(fb_app, name="feedback")
    model_app = typer.Typer(help="The feedback model: train, compare, list, roll back.", no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @fb_app.command("judge")
    def judge(
        config: ConfigOpt = None,
        report: Annotated[
            bool, typer.Option("--report", help="Print precision, recall, F1 and false alarms of labelled lines.")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No verdict lines (with --report).")] = False,
    ) -> None:
        """Judge JSON lines on stdin ({"text", "rating", "scale", "question", "source", "label"}) as
        the configured pipeline would; one JSON verdict a line on stdout."""
        from hub.features.feedback.detection import Detector
        from hub.features.feedback.feature import _analyzer
        from hub.features.feedback.judge import Tally, judge_lines

        cfg, base = _feedback_config(config)
        with commands.handled():
            detector = Detector(cfg, _analyzer(cfg, base), config_dir=base)
        tally = Tally()
        for doc in judge_lines(detector, sys.stdin, tally):
            if not quiet:
                print(json.dumps(doc, ensure_ascii=False), flush=False)
        sys.stdout.flush()
        if report:
            figures = tally.figures()
            out = commands.err if not quiet else commands.console
            if figures["labelled"] == 0:
                out.print('no labelled line (add "label": "negative" / "positive")', highlight=False)
                return
            out.print(
                f"{figures['labelled']} labelled ({figures['negative']} negative): precision {figures['precision']:.3f}"
                f"  recall {figures['recall']:.3f}  F1 {figures['f1']:.3f}"
                f"  false alarms {figures['false_alarm_rate']:.3f}"
                f"  ({figures['errors']} unreadable, {figures['unlabelled']} unlabelled)",
                highlight=False,
            )
            out.print("text threshold   negative_below  precision  recall  F1     false alarms", highlight=False)
            for row in tally.thresholds():
                out.print(
                    f"P(neg) >= {row['negative_at']:.1f}     {row['negative_below']:<14}  {row['precision']:.3f}"
                    f"      {row['recall']:.3f}   {row['f1']:.3f}  {row['false_alarm_rate']:.3f}",
                    highlight=False,
                )

    @fb_app.command("verdict")
    def verdict(
        case_id: Annotated[int, typer.Argument(help="Case id.")],
        what: Annotated[str, typer.Argument(help="not-negative or wrong-topic.")],
        wrong: Annotated[list[str] | None, typer.Option("--wrong", help="A topic id that is wrong.")] = None,
        right: Annotated[list[str] | None, typer.Option("--right", help="A topic id that is right.")] = None,
        by: Annotated[str | None, typer.Option("--by", help="Who says so (default: your login).")] = None,
        note: Annotated[str | None, typer.Option("--note")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Mark a case "not negative" or "wrong topic": a labelled example for `cxhub model train`."""
        from hub.features.feedback.cases import CaseNotFound
        from hub.features.feedback.verdicts import StaffVerdicts, VerdictError

        kind = what.replace("-", "_")
        if kind not in ("not_negative", "wrong_topic"):
            raise commands.fail(f"{what!r}: use not-negative or wrong-topic")
        if kind == "wrong_topic" and not (wrong or right):
            raise commands.fail("wrong-topic needs --wrong TOPIC and/or --right TOPIC")
        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            service = commands.feature_interface(rt, "feedback")
            try:
                label = StaffVerdicts(service).on_case(
                    case_id,
                    kind,
                    actor=by or getpass.getuser(),
                    via="cli",
                    wrong_topics=wrong or [],
                    right_topics=right or [],
                    note=note,
                )
            except (CaseNotFound, VerdictError) as exc:
                raise commands.fail(str(exc)) from None
        commands.console.print(f"case #{case_id}: {what} recorded (label {label})", highlight=False)

    @fb_app.command("missed")
    def missed(
        touchpoint_id: Annotated[str, typer.Argument(help="Touchpoint id.")],
        by: Annotated[str | None, typer.Option("--by", help="Who escalates (default: your login).")] = None,
        note: Annotated[str | None, typer.Option("--note")] = None,
        config: ConfigOpt = None,
    ) -> None:
        """Escalate a touchpoint the detector missed: a case now, a labelled example for training."""
        from hub.features.feedback.verdicts import StaffVerdicts, VerdictError

        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
            service = commands.feature_interface(rt, "feedback")
            try:
                label, case_id = StaffVerdicts(service).missed(
                    touchpoint_id, actor=by or getpass.getuser(), via="cli", note=note
                )
            except VerdictError as exc:
                raise commands.fail(str(exc)) from None
        commands.console.print(f"touchpoint {touchpoint_id}: case #{case_id} (label {label})", highlight=False)

    @fb_app.command("drivers")
    def drivers_cmd(
        weeks: Annotated[int, typer.Option(help="Over the last this many weeks.")] = 4,
        top: Annotated[int, typer.Option(help="Topics per store and week.")] = 5,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The top negative topics per store and week, with the average scores of those touchpoints."""
        print_drivers(config, weeks=weeks, top=top, as_json=as_json)

    @model_app.command("train")
    def model_train(
        config: ConfigOpt = None,
        promote: Annotated[
            bool, typer.Option("--promote/--no-promote", help="Promote the candidate when it measures better.")
        ] = True,
        shipped: Annotated[
            Path | None,
            typer.Option("--shipped", help="Rebuild the shipped model into this folder instead (maintainers)."),
        ] = None,
    ) -> None:
        """Retrain on the shipped data and this deployment's staff verdicts; compare with the model
        in use on held-back labels and the bench set; promote only a better one."""
        try:
            import sklearn  # noqa: F401
        except ImportError:
            raise commands.fail("training needs scikit-learn: pip install 'cxhub[model]'") from None
        if shipped is not None:
            from hub.features.feedback.training import build_shipped

            report = build_shipped(shipped)
            commands.console.print(f"shipped model written to {shipped}: {report.examples}", highlight=False)
            return
        from hub.features.feedback.modelops import train_candidate
        from hub.features.feedback.verdicts import labels

        cfg, base = _feedback_config(config)
        versions = _versions(cfg, base)
        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt, rt.store.connect() as conn:
            rows = labels(conn)
        version, result = train_candidate(versions, rows, taxonomy=_taxonomy(cfg, base))
        commands.console.print(f"candidate {version} ({len(rows)} staff label(s) in the store)", highlight=False)
        _print_comparison(result)
        if promote and result.better:
            versions.promote(version)
            commands.console.print(f"promoted {version}; restart `cxhub run` to load it", highlight=False)

    @model_app.command("eval")
    def model_eval(
        version: Annotated[str, typer.Argument(help="A version from `cxhub model list`.")],
        config: ConfigOpt = None,
        promote: Annotated[bool, typer.Option("--promote", help="Promote it when it measures better.")] = False,
    ) -> None:
        """Compare a stored version with the model in use."""
        from hub.features.feedback.modelops import evaluate
        from hub.features.feedback.verdicts import labels
        from hub.features.feedback.versions import VersionError

        cfg, base = _feedback_config(config)
        versions = _versions(cfg, base)
        with commands.runtime(config, features=with_dependencies(["feedback"])) as rt, rt.store.connect() as conn:
            rows = labels(conn)
        try:
            result = evaluate(versions, version, rows, taxonomy=_taxonomy(cfg, base))
        except VersionError as exc:
            raise commands.fail(str(exc)) from None
        _print_comparison(result)
        if promote and result.better:
            versions.promote(version)
            commands.console.print(f"promoted {version}", highlight=False)

    @model_app.command("list")
    def model_list(config: ConfigOpt = None) -> None:
        """The shipped model and every trained version; the one in use is marked."""
        from hub.features.feedback.modelops import describe
        from hub.features.feedback.textmodel import SHIPPED

        cfg, base = _feedback_config(config)
        shipped_meta = describe(SHIPPED)
        current = None
        rows: list[tuple[str, dict[str, Any]]] = []
        if cfg.sentiment.model_dir:
            versions = _versions(cfg, base)
            current = versions.current()
            rows = [(v, describe(versions.folder(v))) for v in versions.versions()]
        mark = "*" if current is None else " "
        commands.console.print(f"{mark} shipped  {shipped_meta.get('version')}", highlight=False)
        for v, meta in rows:
            mark = "*" if v == current else " "
            commands.console.print(f"{mark} {v}  {meta.get('examples')}", highlight=False)

    @model_app.command("rollback")
    def model_rollback(config: ConfigOpt = None) -> None:
        """Return to the model promoted before the current one (or the shipped model)."""
        from hub.features.feedback.versions import VersionError

        cfg, base = _feedback_config(config)
        versions = _versions(cfg, base)
        try:
            now_in_use = versions.rollback()
        except VersionError as exc:
            raise commands.fail(str(exc)) from None
        commands.console.print(f"in use now: {now_in_use or 'the shipped model'}", highlight=False)


def print_drivers(config: Any, *, weeks: int = 4, top: int = 5, as_json: bool = False) -> None:
    """The drivers report (``cxhub feedback drivers``, ``cxhub stats --by topic``): per store and
    ISO week, the top negative topics, with the average rating, NPS and CSAT of their touchpoints."""
    from dataclasses import asdict

    from commands.display import Display
    from commands.display import table as display_table
    from hub.features.feedback.verdicts import drivers

    with commands.runtime(config, features=with_dependencies(["feedback"])) as rt:
        service = commands.feature_interface(rt, "feedback")
        names = {t.id: t.name for t in (service.detector.tagger.topics.values() if service.detector.tagger else [])}
        with rt.store.connect() as conn:
            rows = drivers(conn, rt.clock(), weeks=weeks, top=top)
    if as_json:
        for d in rows:
            print(json.dumps(asdict(d) | {"name": names.get(d.topic, d.topic)}, ensure_ascii=False))
        return
    show = Display(rt.config)
    table = display_table("store", "week", "topic", "negative", "of", "rating", "NPS", "CSAT")
    for d in rows:
        table.add_row(
            show.store(d.store),
            d.week,
            names.get(d.topic, d.topic),
            str(d.negative),
            str(d.total),
            "" if d.avg_rating5 is None else f"{d.avg_rating5:.2f}",
            "" if d.avg_nps is None else f"{d.avg_nps:.1f}",
            "" if d.avg_csat is None else f"{d.avg_csat:.1f}",
        )
    commands.console.print(table)
