"""Accuracy and macro-F1 of the embedded classifier on our held-out evaluation sentences.

The evaluation set (benchmarks/data/emotion_eval.yaml, 24 hand-written sentences per emotion) is
never used for training or tuning; the classifier trains on worker/quanteval_worker/data only.

    .venv/bin/python benchmarks/classifier_accuracy.py
"""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml
from sklearn.metrics import accuracy_score, f1_score

from quanteval.api.spec import ClassifierSpec
from quanteval.emotions import BUILTIN_EMOTION_SETS
from quanteval_worker.classifier import load_classifier, predict

EVAL_SET = Path(__file__).parent / "data" / "emotion_eval.yaml"


def main() -> None:
    sentences: dict[str, list[str]] = yaml.safe_load(EVAL_SET.read_text())
    for name, emotions in BUILTIN_EMOTION_SETS.items():
        classifier = load_classifier(ClassifierSpec(builtin="minilm"), list(emotions))
        texts = [t for e in emotions for t in sentences[e]]
        truth = [e for e in emotions for _ in sentences[e]]
        predicted = [p.label for p in predict(classifier, texts)]
        accuracy = accuracy_score(truth, predicted)
        macro_f1 = f1_score(truth, predicted, labels=list(emotions), average="macro")
        per_emotion = f1_score(truth, predicted, labels=list(emotions), average=None)
        detail = ", ".join(f"{e} {f:.2f}" for e, f in zip(emotions, per_emotion, strict=True))
        print(f"{name}: {len(texts)} sentences, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}")
        print(f"  per-emotion F1: {detail}")


if __name__ == "__main__":
    main()
