"""What the API's write methods return: typed results, pydantic models because the MCP write tools return them
as structured content. A module of their own so that `specmem.api` (and every CLI command) loads without pydantic;
`specmem.api` re-exports them on first use."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from specmem.indexer.draft import Duplicate


class Written(BaseModel):
    """A memory file written or updated, and indexed; or, for a duplicate, the memory that already says it."""

    id: int
    path: str
    action: Literal["written", "updated", "skipped"] = "written"
    changed: list[str] = Field(default_factory=list, description="What changed (updates)")
    duplicates: list[Duplicate] = Field(default_factory=list, description="Memories that say the same")
    warnings: list[str] = Field(default_factory=list)
    checkpoint: str | None = Field(default=None, description="Restore it to undo an update")


class Deleted(BaseModel):
    """Memory files deleted, and the checkpoint that undoes it."""

    deleted: list[str]
    checkpoint: str = Field(description="Restore this checkpoint to undo the delete")


class Validation(BaseModel):
    id: int
    useful: bool
    confidence_before: float
    confidence_after: float
