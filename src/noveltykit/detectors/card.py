"""The README.md model card written beside every saved model: what it is, what it was trained
on, how its threshold was set and what it is for, in words a user reads before trusting it."""
from __future__ import annotations


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "(defaults)"


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
        f"- input: {pre['channels']} channel(s), {pre['size']}x{pre['size']} pixels; resize: {pre['resize']}; "
        f"scaling: {pre['scaling']}; a grey image for a colour model: {pre['grey_to_colour']}; a colour "
        f"image for a grey model: {pre['colour_to_grey']}", "",
        "## Threshold", "",
        f"- {config['threshold_']:.6g}: the {config['threshold_from']['quantile']:g} quantile of the scores of "
        f"{train.get('n_validation', 'the')} normal validation images "
        f"({train.get('validation', 'not recorded')}); no novel image was used",
    ]
    if val:
        lines.append(f"- validation scores: min {val['min']:.4g}, median {val['median']:.4g}, 95% {val['q95']:.4g}, "
                     f"max {val['max']:.4g}; {100 * val['above_threshold']:.1f}% of them above the threshold "
                     "(the false-alarm rate to expect on normal images like them)")
    lines += ["", "## Intended use", "",
              "Flag images unlike the training images, for a person to look at. The threshold fixes the "
              "false alarms on normal images; how many novelties it catches depends on what they are, and "
              "was not measured on this model. Images unlike anything in training in ways that do not "
              "matter (another camera, lighting, resolution) will score high too.", "",
              "```bash", "noveltykit score THIS_FOLDER images/ --out scores.csv", "```", ""]
    return "\n".join(lines)
