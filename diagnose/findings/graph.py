"""Reading a Keras model's wiring from its description in config.json.

``diagnose.instruments.describe.describe`` records each layer's class, scalar
config and ``inbound`` edges (per call, the layers that produced its inputs). The
questions here are answered from classes, configs and edges only; names serve as
node identifiers and never as hints (a layer called "softmax" is not a softmax).
"""

from __future__ import annotations

__all__ = ["KerasGraph"]

# Layers that only reshape, drop or pass on their input: looking through them, a
# Dense behind Dropout(Softmax(...)) still reads the attention.
PASS_THROUGH = frozenset({"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
                          "AlphaDropout", "Reshape", "Permute", "Flatten", "Identity", "ActivityRegularization",
                          "Masking"})
# Layers that apply a learned linear map to their input.
LINEAR = frozenset({"Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D"})
# Layers whose output is never normalised to a distribution (they have no activation).
UNNORMALISED = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
                          "Embedding", "LayerNormalization", "BatchNormalization"})


class KerasGraph:
    """The layer graph of a described Keras model.

    Args:
        model: ``config["model"]`` of a Keras run (``kind == "keras"``).
    """

    def __init__(self, model: dict):
        self.layers = [layer for layer in (model.get("layers") or []) if isinstance(layer, dict)]
        self.by_name = {layer.get("name"): layer for layer in self.layers}
        self.index = {layer.get("name"): i for i, layer in enumerate(self.layers)}
        self.has_edges = any("inbound" in layer for layer in self.layers)
        self.declared_outputs = [n for n in (model.get("outputs") or []) if n in self.by_name]

    # --- edges -------------------------------------------------------------------

    def calls(self, name: str) -> list[list[str]]:
        """Per call of the layer, the layers that produced its inputs."""
        layer = self.by_name.get(name) or {}
        return [[p for p in call if isinstance(p, str)] for call in (layer.get("inbound") or [])
                if isinstance(call, (list, tuple))]

    def producers(self, name: str) -> set[str]:
        return {p for call in self.calls(name) for p in call}

    def resolve(self, name: str) -> set[str]:
        """``name``, or what it passes on when it only reshapes or drops (recursively)."""
        out, todo, seen = set(), [name], set()
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if self.cls(current) in PASS_THROUGH and self.producers(current):
                todo.extend(self.producers(current))
            else:
                out.add(current)
        return out

    def outputs(self) -> list[str]:
        """The model's output layers, looking through trailing Dropout and the like.

        Uses the recorded ``outputs`` when present; otherwise the layers nothing
        consumes; otherwise (an old record without edges) the last layer.
        """
        names = self.declared_outputs
        if not names and self.has_edges:
            consumed = {p for name in self.by_name for p in self.producers(name)}
            names = [n for n in self.by_name if n not in consumed and self.cls(n) != "InputLayer"]
        if not names and self.layers:
            names = [self.layers[-1].get("name")]
        resolved = []
        for name in names:
            resolved.extend(sorted(self.resolve(name), key=lambda n: self.index.get(n, 0)))
        return resolved

    def reached_without(self, removed: set[str]) -> bool | None:
        """Whether some model input still reaches every output with the ``removed`` layers taken out (a path
        around them, a residual connection); None without edges to follow."""
        if not self.has_edges:
            return None
        outputs = [name for name in (self.declared_outputs or self.outputs()) if name in self.by_name]
        if not outputs:
            return None
        for output in outputs:
            seen, todo, reached = set(), [output], False
            while todo and not reached:
                current = todo.pop()
                if current in seen or current in removed:
                    continue
                seen.add(current)
                reached = self.cls(current) == "InputLayer"
                todo.extend(self.producers(current))
            if not reached:
                return False
        return True

    # --- layer properties ------------------------------------------------------------

    def upstream(self, name: str) -> set[str]:
        """Every layer whose output reaches ``name``'s inputs (its ancestors), ``name`` excluded."""
        out, todo = set(), list(self.producers(name))
        while todo:
            current = todo.pop()
            if current not in out:
                out.add(current)
                todo.extend(self.producers(current))
        return out

    def cls(self, name: str) -> str | None:
        return (self.by_name.get(name) or {}).get("class")

    def activation(self, name: str) -> str | None:
        """The layer's activation: "softmax" for a Softmax layer, else its config's, else None."""
        if self.cls(name) == "Softmax":
            return "softmax"
        act = ((self.by_name.get(name) or {}).get("config") or {}).get("activation")
        return act if isinstance(act, str) else None

    def is_softmax(self, name: str) -> bool:
        return self.cls(name) != "InputLayer" and self.activation(name) == "softmax"

    def normalises_input(self, name: str) -> bool:
        """True when the softmax acts on the layer's input (Softmax, Activation), not inside it."""
        return self.is_softmax(name) and self.cls(name) in ("Softmax", "Activation")

    def output_is_distribution(self, name: str) -> bool | None:
        """True for a softmax output, False for a known unnormalised one, None when unknown."""
        if self.is_softmax(name):
            return True
        if self.activation(name) is not None or self.cls(name) in UNNORMALISED | LINEAR:
            return False
        return None  # a custom layer may normalise inside; do not guess

    def describe(self, name: str) -> str:
        """``Class 'name'`` for messages (the name only helps the reader find the layer)."""
        return f"{self.cls(name)} '{name}'"

    def field(self, name: str, key: str) -> str:
        """The config.json path of one of the layer's fields, for evidence."""
        return f"model.layers[{self.index.get(name, '?')}].{key}"

    # --- the attention question --------------------------------------------------------

    def linear_on_attention(self) -> list[tuple[str, str, str, str]]:
        """Linear layers that read attention scores or probabilities.

        Returns:
            ``(linear, input, softmax, how)`` per offending input, ``how`` being
            "scores" (the input also feeds the softmax) or "probabilities" (the
            input is the softmax's output). Softmax layers producing the model's
            output are not attention and are left out.
        """
        outputs = set(self.outputs())
        attention = [n for n in self.by_name if self.is_softmax(n) and n not in outputs]
        scores: dict[str, str] = {}
        for soft in attention:
            if self.normalises_input(soft):
                for producer in self.producers(soft):
                    for real in self.resolve(producer):
                        scores.setdefault(real, soft)
        hits = []
        for name in self.by_name:
            if self.cls(name) not in LINEAR:
                continue
            for producer in sorted(self.producers(name), key=lambda n: self.index.get(n, 0)):
                for real in sorted(self.resolve(producer), key=lambda n: self.index.get(n, 0)):
                    if real in attention:
                        hits.append((name, real, real, "probabilities"))
                    elif real in scores:
                        hits.append((name, real, scores[real], "scores"))
        return hits
