"""Scores of a run's generations: F1 against the intended emotion, accuracy, intensity."""

from dataclasses import dataclass

from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from quanteval.api.result import ConfusionMatrix, EmotionScores


@dataclass(frozen=True)
class Scores:
    f1_macro: float
    accuracy: float
    intensity: float
    per_emotion: dict[str, EmotionScores]
    confusion: ConfusionMatrix


def score(
    intended: list[str],
    predicted: list[str],
    intended_probability: list[float],
    emotions: list[str],
) -> Scores:
    """Macro-F1 over the intended emotions; a prediction outside them counts as a miss.

    Intensity is the classifier's probability of the intended emotion on a 0-100 scale.
    """
    precision, recall, f1, support = precision_recall_fscore_support(
        intended, predicted, labels=emotions, average=None, zero_division=0
    )
    columns = list(emotions) + sorted(set(predicted) - set(emotions))
    matrix = confusion_matrix(intended, predicted, labels=columns)[: len(emotions)]
    per_emotion = {}
    for index, emotion in enumerate(emotions):
        mine = [p for e, p in zip(intended, intended_probability, strict=True) if e == emotion]
        per_emotion[emotion] = EmotionScores(
            f1=float(f1[index]),
            precision=float(precision[index]),
            recall=float(recall[index]),
            support=int(support[index]),
            intensity=100 * sum(mine) / len(mine) if mine else 0.0,
        )
    correct = sum(i == p for i, p in zip(intended, predicted, strict=True))
    return Scores(
        f1_macro=float(f1.mean()) if len(emotions) else 0.0,
        accuracy=correct / len(intended) if intended else 0.0,
        intensity=100 * sum(intended_probability) / len(intended_probability)
        if intended_probability
        else 0.0,
        per_emotion=per_emotion,
        confusion=ConfusionMatrix(
            labels=list(emotions), predicted_labels=columns, matrix=matrix.tolist()
        ),
    )
