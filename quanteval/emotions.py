"""Built-in emotion sets."""

BUILTIN_EMOTION_SETS: dict[str, tuple[str, ...]] = {
    # The study's: the seven ISEAR emotions.
    "isear": ("anger", "disgust", "fear", "guilt", "joy", "sadness", "shame"),
    # Ekman's six basic emotions plus neutral, as j-hartmann/emotion-english-distilroberta-base.
    "ekman7": ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"),
}

ALL_BUILTIN_EMOTIONS: tuple[str, ...] = tuple(
    sorted({e for emotions in BUILTIN_EMOTION_SETS.values() for e in emotions})
)


def resolve_emotions(emotions: str | list[str]) -> tuple[str, ...]:
    """A set name or an explicit list, as the tuple of emotion names in a fixed order."""
    if isinstance(emotions, str):
        try:
            return BUILTIN_EMOTION_SETS[emotions]
        except KeyError:
            known = ", ".join(sorted(BUILTIN_EMOTION_SETS))
            raise ValueError(
                f"unknown emotion set {emotions!r}; use one of {known} or a list"
            ) from None
    return tuple(emotions)
