"""Emotion classifiers: any sequence classifier through a label map, and the embedded MiniLM one."""

from pathlib import Path

import pytest

from quanteval.exitcodes import CannotLoadError
from quanteval.spec import ClassifierSpec
from quanteval_worker.classifier import load_classifier, predict


def test_a_sequence_classifier_is_mapped_onto_the_emotions(tiny_classifier_dir: Path) -> None:
    spec = ClassifierSpec(
        source=str(tiny_classifier_dir),
        label_map={"ANGRY": "anger", "HAPPY": "joy", "AFRAID": "fear"},
    )
    classifier = load_classifier(spec, ["anger", "joy", "fear"])
    assert classifier.labels == ["anger", "joy", "fear", "other"]
    predictions = predict(classifier, ["I am furious.", "What a lovely day!", "x"])
    assert len(predictions) == 3
    for prediction in predictions:
        assert set(prediction.probabilities) == {"anger", "joy", "fear", "other"}
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction.label == max(prediction.probabilities, key=prediction.probabilities.get)  # type: ignore[arg-type]


def test_labels_that_map_onto_one_emotion_add_up(tiny_classifier_dir: Path) -> None:
    spec = ClassifierSpec(
        source=str(tiny_classifier_dir),
        label_map={"ANGRY": "anger", "AFRAID": "anger", "HAPPY": "joy", "other": "joy"},
    )
    classifier = load_classifier(spec, ["anger", "joy"])
    assert classifier.labels == ["anger", "joy"]
    [prediction] = predict(classifier, ["some text"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_classifier_whose_labels_match_no_emotion_is_refused(tiny_classifier_dir: Path) -> None:
    with pytest.raises(CannotLoadError, match="labelMap"):
        load_classifier(ClassifierSpec(source=str(tiny_classifier_dir)), ["guilt", "shame"])


def test_the_builtin_classifier_recognises_plain_emotional_sentences() -> None:
    classifier = load_classifier(ClassifierSpec(builtin="minilm"), ["anger", "joy", "fear"])
    predictions = predict(
        classifier,
        [
            "I was furious when he smashed my car window and laughed about it.",
            "We danced all night, laughing, the happiest day of my life!",
            "My heart pounded as the footsteps came closer in the dark alley.",
        ],
    )
    assert [p.label for p in predictions] == ["anger", "joy", "fear"]
