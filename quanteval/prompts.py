"""Prompt sets and the expansion of prompts x emotions x samples into generation requests."""

import hashlib
from dataclasses import dataclass

PLACEHOLDER = "<class>"

# The ten seed prompts of arXiv 2501.19317 byte for byte (its data/seed_prompts.csv, prompt 4's
# trailing space included); <class> is replaced by the emotion name.
PAPER_PROMPTS: tuple[str, ...] = (
    "Describe a situation where a person felt <class>",
    "Write a text that expresses <class>",
    "Phrases that express <class>",
    "What is a sentence example for <class>? ",
    "Can you provide an example of a situation where someone experienced <class>?",
    "What is an example of a <class> sentence?",
    "<class> sentence",
    "Experience for <class>?",
    "Please describe a situation or event — in as much detail as possible — in which a reader "
    "felt <class>",
    "Please complete the sentence: I felt <class> when/because",
)

BUILTIN_PROMPT_SETS: dict[str, tuple[str, ...]] = {"paper": PAPER_PROMPTS}

# The paper set before prompt 4 had its trailing space: the content hash of a run from before
# (matrix.legacy_hash) was computed over it.
PAPER_PROMPTS_BEFORE_THE_SPACE: tuple[str, ...] = tuple(t.rstrip() for t in PAPER_PROMPTS)


def chat_message(prompt: str) -> str:
    """A prompt as a chat template's user message: without surrounding whitespace, which the
    template frames (Llama-2's strips it itself; ChatML's would send prompt 4's trailing space
    as a token of its own before the end of the turn)."""
    return prompt.strip()


@dataclass(frozen=True)
class Sample:
    """One generation request: a prompt template filled with an emotion, and its sample index."""

    prompt_id: int
    emotion: str
    sample_index: int
    prompt: str
    seed: int

    @property
    def key(self) -> str:
        return f"p{self.prompt_id}-{self.emotion}-s{self.sample_index}"


def render(template: str, emotion: str) -> str:
    return template.replace(PLACEHOLDER, emotion)


def sample_seed(base_seed: int, prompt_id: int, emotion: str, sample_index: int) -> int:
    """A 63-bit seed of its own per sample, so its text never depends on its batch."""
    digest = hashlib.sha256(f"{base_seed}/{prompt_id}/{emotion}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def expand_samples(
    templates: tuple[str, ...] | list[str],
    emotions: tuple[str, ...] | list[str],
    samples_per_prompt: int,
    base_seed: int,
) -> list[Sample]:
    """Every (prompt, emotion, sample index), ordered by emotion, then prompt, then sample."""
    return [
        Sample(
            prompt_id=prompt_id,
            emotion=emotion,
            sample_index=index,
            prompt=render(template, emotion),
            seed=sample_seed(base_seed, prompt_id, emotion, index),
        )
        for emotion in emotions
        for prompt_id, template in enumerate(templates, start=1)
        for index in range(samples_per_prompt)
    ]
