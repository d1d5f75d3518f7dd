"""The Whisper options as fields of the service's JSON body (``POST /v1/jobs`` by path).

Generated from :data:`vramscribe.decoding.OPTIONS`, so the service accepts exactly
the names the CLI does (in their underscore spellings) and documents them in the
OpenAPI schema; values are read leniently and checked by ``JobRequest``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from vramscribe.decoding import BY_FIELD

Loose = str | int | float | bool | list[float] | list[int] | None

_FIELDS: dict[str, Any] = {
    name: (Loose, Field(default=None, description=opt.help)) for name, opt in BY_FIELD.items()
}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid")


if TYPE_CHECKING:

    class WhisperFields(_Base):
        """A base model with one optional field per Whisper option spelling."""

else:
    WhisperFields = create_model("WhisperFields", __base__=_Base, **_FIELDS)


def whisper_values(body: BaseModel) -> dict[str, Any]:
    return {name: getattr(body, name) for name in BY_FIELD}
