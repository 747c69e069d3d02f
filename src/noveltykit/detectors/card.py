"""The README.md model card written beside every saved model: what it is, what it was trained
on, how its threshold was set and what it is for, in words a user reads before trusting it."""
from __future__ import annotations

from .thresholds import false_alarm_rate, too_few_above


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(defaults)"


def _skipped(data: dict) -> list[str]:
    """The files `fit` left out of its training (and validation) folder, each with its reason."""
    lines = []
    for key, where in (("skipped", "training"), ("validation_skipped", "validation")):
        if key in data:
            files = data[key]
            lines.append(f"- files skipped in the {where} folder: {len(files) or 'none'}")
            lines += [f"  - `{f['path']}`: {f['reason']}" for f in files]
    return lines


def _threshold_origin(source: dict, train: dict) -> str:
    if "quantile" in source:
        text = (f"the {source['quantile']:g} quantile of the scores of {train.get('n_validation', 'the')} normal "
                f"validation images ({train.get('validation', 'not recorded')})")
    elif "score" in source:
        text = "a score given by hand"
    else:
        text = source.get("rule", "not recorded")
    if source.get("set_by"):
        before = source.get("previous", {}).get("threshold")
        text += f"; set by {source['set_by']} at {source.get('at', '?')}" + (
            f", was {before:.6g}" if isinstance(before, (int, float)) else "")
    return text


def _false_alarms(config: dict, val: dict) -> list[str]:
    """The false-alarm rate to expect on normal images like the validation ones, with its interval
    from their number, and a warning when too few of them lie above the threshold."""
    scores = config.get("validation_scores")
    if scores is None:  # saved before the scores were kept: the share alone
        return ([f"- {100 * val['above_threshold']:.1f}% of the validation scores above the threshold (the "
                 "false-alarm rate to expect on normal images like them)"] if val else [])
    fa = false_alarm_rate(scores, config["threshold_"])
    lines = [f"- false alarms to expect on normal images like the validation ones: {100 * fa['rate']:.1f}% "
             f"({fa['above']} of {fa['n']} validation images above the threshold; "
             f"{100 * fa['confidence']:.0f}% interval {100 * fa['low']:.1f}% to {100 * fa['high']:.1f}%)"]
    if "quantile" in config["threshold_from"] and (warning := too_few_above(scores, config["threshold_"])):
        lines.append(f"- **warning**: {warning}")
    return lines


def model_card(config: dict) -> str:
    pre, train = config["preprocessing"], config.get("training", {})
    val = train.get("validation_scores", {})
    data = train.get("data", {})
    lines = [
        f"# noveltykit model: `{config['detector']}`", "",
        "A one-class novelty detector: it learned what normal images look like from normal images",
        "only, and scores new ones, higher = more novel. An image is called novel when its score is",
        "above the threshold.", "",
        "## Method", "",
        f"- detector `{config['detector']}`, parameters: {_params(config['params'])}",
        f"- noveltykit {config['noveltykit_version']}; versions: "
        + ", ".join(f"{k} {v}" for k, v in config.get("versions", {}).items()), "",
        "## Data", "",
        f"- training images: {train.get('n_train', 'not recorded')}"
        + (f" from {data['source']}" if data.get("source") else "")
        + (f", classes {', '.join(data['classes'])}" if data.get("classes") else ""),
        f"- fingerprint of the training images: `{train.get('train_fingerprint', 'not recorded')}`",
        *_skipped(data),
        f"- input: {pre['channels']} channel(s), {pre['size']}x{pre['size']} pixels; resize: {pre['resize']}; "
        f"scaling: {pre['scaling']}; a grey image for a colour model: {pre['grey_to_colour']}; a colour "
        f"image for a grey model: {pre['colour_to_grey']}", "",
        "## Threshold", "",
        f"- {config['threshold_']:.6g}: {_threshold_origin(config['threshold_from'], train)}; no novel image was used",
    ]
    if val:
        lines.append(f"- validation scores: min {val['min']:.4g}, median {val['median']:.4g}, 95% {val['q95']:.4g}, "
                     f"max {val['max']:.4g}")
    lines += _false_alarms(config, val)
    if config.get("pixel_threshold_") is not None:
        q = config["params"].get("threshold_quantile", 0.95)
        lines.append(f"- anomaly maps: a pixel above {config['pixel_threshold_']:.6g} is flagged, the {q:g} "
                     "quantile of the largest pixel of each normal validation image's map")
    lines += ["", "## Intended use", "",
              "Flag images unlike the training images, for a person to look at. The threshold fixes the "
              "false alarms on normal images; how many novelties it catches depends on what they are, and "
              "was not measured on this model. Images unlike anything in training in ways that do not "
              "matter (another camera, lighting, resolution) will score high too.", "",
              "```bash", "noveltykit score THIS_FOLDER images/ --out scores.csv", "```", ""]
    return "\n".join(lines)
