"""The QuantEval worker: evaluates one (model, precision) run and writes its results."""
