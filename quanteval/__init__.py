"""QuantEval: what quantization really costs an LLM at affective text generation."""

__version__ = "0.1.0"

API_GROUP = "quanteval.io"
API_VERSION = "v1alpha1"
KIND = "QuantEval"
