"""The deterministic path: check, parse, score — one name in, a scored result out."""

from __future__ import annotations

from llmrelay.media.confidence import OVERALL, ConfidenceModel
from llmrelay.media.features import features, unexplained
from llmrelay.media.parse import MAX_NAME_LENGTH, GuessitEngine, check_name, to_result
from llmrelay.media.result import CORE_FIELDS, FieldInfo, MediaResult

_EMPTY: tuple[object, ...] = (None, [], "")
_VALUE_FIELDS = tuple(
    field
    for field in MediaResult.__struct_fields__
    if field not in CORE_FIELDS
    and field not in {"name", "confidence", "fields", "parser_version", "cached"}
)
"""The fields that hold what the name says, besides the core ones."""


class Analyzer:
    """guessit plus the calibrated confidence model, both built once."""

    def __init__(
        self,
        *,
        engine: GuessitEngine | None = None,
        model: ConfidenceModel | None = None,
        max_name_length: int = MAX_NAME_LENGTH,
    ) -> None:
        self.engine = engine or GuessitEngine()
        self.model = model or ConfidenceModel.load()
        self.max_name_length = max_name_length

    def analyze(self, name: str) -> tuple[MediaResult, list[str]]:
        """The scored result and the words guessit left unexplained.

        Title, season and episode get their own calibrated confidence, present or not (a
        missing season can be wrong too); year, type and the other fields the overall one.
        """
        guess = self.engine.guess(check_name(name, max_length=self.max_name_length))
        result = to_result(guess)
        scores = self.model.scores(features(guess))
        overall = scores[OVERALL]
        fields = {
            field: FieldInfo(confidence=round(scores.get(field, overall), 4))
            for field in CORE_FIELDS
        }
        for field in _VALUE_FIELDS:
            if getattr(result, field) not in _EMPTY:
                fields[field] = FieldInfo(confidence=round(overall, 4))
        result.fields = fields
        result.confidence = round(overall, 4)
        return result, unexplained(guess)


__all__ = ["Analyzer"]
