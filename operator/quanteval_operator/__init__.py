"""The QuantEval operator: one Job per run, status from Jobs and pods. Control plane only."""
