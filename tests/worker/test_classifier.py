"""Emotion classifiers: any sequence classifier through a label map, and the embedded MiniLM one."""

from pathlib import Path

import pytest

from quanteval.api.errors import CannotLoadError
from quanteval.api.spec import ClassifierSpec
from quanteval_worker.classifier import load_classifier, predict


def test_a_sequence_classifier_is_mapped_onto_the_emotions(tiny_classifier_dir: Path) -> None:
    spec = ClassifierSpec(
        source=str(tiny_classifier_dir),
        label_map={"ANGRY": "anger", "HAPPY": "joy", "AFRAID": "fear"},
    )
    classifier = load_classifier(spec, ["anger", "joy", "fear"]).classifier
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
    classifier = load_classifier(spec, ["anger", "joy"]).classifier
    assert classifier.labels == ["anger", "joy"]
    [prediction] = predict(classifier, ["some text"])
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_a_classifier_whose_labels_match_no_emotion_is_refused(tiny_classifier_dir: Path) -> None:
    with pytest.raises(CannotLoadError, match="labelMap"):
        load_classifier(ClassifierSpec(source=str(tiny_classifier_dir)), ["guilt", "shame"])


def test_a_classifier_that_can_never_predict_an_emotion_is_refused_naming_it(
    tiny_classifier_dir: Path,
) -> None:
    spec = ClassifierSpec(source=str(tiny_classifier_dir), label_map={"ANGRY": "anger"})
    with pytest.raises(CannotLoadError) as error:
        load_classifier(spec, ["anger", "guilt", "shame"])
    message = error.value.message
    assert "no label for guilt, shame" in message and str(tiny_classifier_dir) in message
    assert "acceptMissingEmotions" in message


def test_an_accepted_partial_classifier_says_at_what_macro_f1_is_capped(
    tiny_classifier_dir: Path,
) -> None:
    spec = ClassifierSpec(
        source=str(tiny_classifier_dir),
        label_map={"ANGRY": "anger", "HAPPY": "joy"},
        accept_missing_emotions=True,
    )
    loaded = load_classifier(spec, ["anger", "joy", "guilt", "shame"])
    assert loaded.unpredictable == ["guilt", "shame"]
    [warning] = loaded.warnings(["anger", "joy", "guilt", "shame"])
    assert "guilt, shame" in warning and "capped at 2/4 = 0.500" in warning


def test_a_classifier_path_that_does_not_exist_is_named() -> None:
    spec = ClassifierSpec(source="/nonexistent/classifier")
    with pytest.raises(CannotLoadError, match="classifier: model path /nonexistent/classifier"):
        load_classifier(spec, ["anger", "joy"])


def test_the_builtin_classifier_recognises_plain_emotional_sentences() -> None:
    loaded = load_classifier(ClassifierSpec(builtin="minilm"), ["anger", "joy", "fear"])
    assert loaded.unpredictable == [] and loaded.warnings(["anger", "joy", "fear"]) == []
    classifier = loaded.classifier
    predictions = predict(
        classifier,
        [
            "I was furious when he smashed my car window and laughed about it.",
            "We danced all night, laughing, the happiest day of my life!",
            "My heart pounded as the footsteps came closer in the dark alley.",
        ],
    )
    assert [p.label for p in predictions] == ["anger", "joy", "fear"]


def test_score_text_prompt_and_continuation_classifies_what_the_study_classified() -> None:
    """The study's pipeline returned prompt + continuation and classified that; the prompt
    names the emotion, so the same neutral continuation reads as the prompt's emotion."""
    from quanteval.prompts import expand_samples
    from quanteval_worker.evaluation import classify
    from quanteval_worker.generation import BatchTiming, Generation

    loaded = load_classifier(ClassifierSpec(builtin="minilm"), ["anger", "joy", "fear"])
    samples = expand_samples(
        ["Describe a situation where a person felt <class>:"], ["anger", "joy", "fear"], 1, 3
    )
    timing = BatchTiming(0, 0.0, 0.0)
    generations = [
        Generation(s, " The bus came at nine and we got on.", 9, 8, timing, 0.0, None, 0.0)
        for s in samples
    ]
    alone, _ = classify(loaded, generations, ["anger", "joy", "fear"])
    joined, _ = classify(loaded, generations, ["anger", "joy", "fear"], "promptAndContinuation")
    assert len({p.label for p in alone}) == 1  # one text, one label
    texts = [s.prompt + " The bus came at nine and we got on." for s in samples]
    assert [p.probabilities for p in joined] == [
        p.probabilities for p in predict(loaded.classifier, texts)
    ]
    assert [p.probabilities for p in joined] != [p.probabilities for p in alone]
