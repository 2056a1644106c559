"""A model with several outputs, read one output at a time: the view of each output the rules of scope "output"
check, and their findings named after it."""

from __future__ import annotations

from diagnose.findings.base import Evidence, Finding, RunView, contract, number

__all__ = ["output_views", "of_output", "OUTPUT_COLUMNS"]


# The columns a model with several outputs records per output, as ``COLUMN/NAME``.
OUTPUT_COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy", "probe_task_error", "out_zero_frac",
                  "out_dead_rows", "target_at_floor", "max_prob", "target_prob")


def output_views(view: RunView) -> list[tuple[str, RunView]]:
    """For a model with several outputs (summary.json's ``contract.outputs``), a view of each output as if it
    were the model's only one: its contract facts over the run's, its loss, output layer and constant's loss,
    and its own columns (``loss/NAME`` as ``loss``...). [] for a model with one output.

    Whatever the run records for the whole model (gradients, update ratios, the probe's
    losses) stays in each view as it is.
    """
    outputs = contract(view).get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return []
    shared = {k: v for k, v in contract(view).items() if k not in ("outputs", "loss", "constant_loss",
                                                                   "constant_loss_valid")}
    views = []
    for facts in outputs:
        if not isinstance(facts, dict) or not isinstance(facts.get("name"), str):
            continue
        name = facts["name"]
        loss, output = facts.get("loss") or {}, facts.get("output") or {}
        model = {**view.model, "outputs": [name], "loss": loss.get("name"), "loss_kind": loss.get("kind"),
                 "loss_from_logits": bool(loss.get("from_logits")),
                 "output_shape": [None, *output["shape"]] if isinstance(output.get("shape"), list) else None}
        columns = {f"{c}/{name}": c for c in OUTPUT_COLUMNS}
        metrics = view.metrics.drop(columns=[c for c in OUTPUT_COLUMNS if c in view.metrics.columns] +
                                    [c for c in view.metrics.columns if "/" in c and c.split("/", 1)[0] in
                                     OUTPUT_COLUMNS and c not in columns])
        metrics = metrics.rename(columns=columns)
        constant = number(facts.get("constant_loss"))
        summary = {**view.summary, "contract": {**shared, **{k: v for k, v in facts.items() if k != "name"}},
                   "baselines": {} if constant is None else {"constant_loss": constant}}
        views.append((name, RunView({**view.config, "model": model}, summary, metrics, view.attention)))
    return views


def of_output(finding: Finding, name: str) -> Finding:
    """A finding made on one output's view (:func:`output_views`), naming that output and its columns."""
    def metric(text: str) -> str:
        if text.startswith("summary.contract."):
            return f"summary.contract.outputs[{name}].{text[len('summary.contract.'):]}"
        for column in OUTPUT_COLUMNS:
            if text == column or text.startswith(column + " "):
                return f"{column}/{name}{text[len(column):]}"
        return text

    evidence = tuple(Evidence(metric(e.metric), e.observed, e.threshold, e.steps) for e in finding.evidence)
    first = (finding.title.split() or [""])[0]
    # "The loss is flat" reads on as "the loss is flat"; a name ("ReLU", "BatchNormalization") keeps its case.
    title = finding.title[0].lower() + finding.title[1:] if first[:1].isupper() and first[1:].islower() \
        else finding.title
    return Finding(id=finding.id, kind=finding.kind, severity=finding.severity, title=f"Output '{name}': {title}",
                   evidence=evidence, explanation=finding.explanation, fix=finding.fix, figure=finding.figure)
