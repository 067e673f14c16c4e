"""The MCP tools that change memory files and checkpoints. The file changes first; the index follows at once,
and embeddings follow in the background."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from mcp_types import ToolAnnotations
from pydantic import Field

from specmem.api import Deleted, Written
from specmem.indexer.checkpoints import CheckpointInfo, RestoreReport
from specmem.indexer.draft import Draft, OnDuplicate
from specmem.indexer.tiers import Tier
from specmem.server.mcp.tools import READ_ONLY, app, tool

CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
DESTROYS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


@tool("Write a memory", CHANGES)
def memory_write(
    ctx: Context,
    title: Annotated[str, Field(max_length=200)],
    content: Annotated[str, Field(description="Markdown body; a '# title' heading is added if it has none")],
    spec_folder: Annotated[str, Field(description="e.g. 003-auth; the file goes to <spec_folder>/memory/")],
    tier: Tier = "normal",
    context_type: str | None = None,
    trigger_phrases: list[str] | None = None,
    tags: list[str] | None = None,
    on_duplicate: Annotated[
        OnDuplicate | None, Field(description="Default: skip an exact duplicate, else write and warn")
    ] = None,
) -> Written:
    """Save a new memory as a markdown file (named by date and title, never overwriting one) and index it.
    Memories of the spec folder that say the same are returned; on_duplicate decides what happens."""
    draft = Draft(
        title, content, spec_folder, tier, context_type, tuple(trigger_phrases or ()), tuple(tags or ())
    )
    return app(ctx).memories.write(draft, on_duplicate=on_duplicate)


@tool("Update a memory's metadata", CHANGES)
def memory_update(
    ctx: Context,
    id_or_path: str,
    title: Annotated[str | None, Field(max_length=200)] = None,
    tier: Tier | None = None,
    context_type: str | None = None,
    trigger_phrases: list[str] | None = None,
    tags: list[str] | None = None,
    confirm_citations: Annotated[bool, Field(description="It holds for the code now: re-baseline")] = False,
) -> Written:
    """Change a memory's frontmatter (title, tier, context type, trigger phrases, tags). Only the keys that
    change are rewritten; the body, comments, key order and other keys stay as they were."""
    return app(ctx).memories.update(
        id_or_path,
        title=title,
        tier=tier,
        context_type=context_type,
        trigger_phrases=trigger_phrases,
        tags=tags,
        confirm_citations=confirm_citations,
    )


@tool("Delete memories", DESTROYS)
def memory_delete(
    ctx: Context,
    id_or_path: str | None = None,
    spec_folder: str | None = None,
    confirm: Annotated[bool, Field(description="Required (true) to delete a whole spec folder")] = False,
) -> Deleted:
    """Delete one memory (id or path) or every memory of a spec folder (with confirm: true). A checkpoint is
    taken first; its name is returned so the delete can be undone with checkpoint_restore."""
    return app(ctx).memories.delete(id_or_path, spec_folder=spec_folder, confirm=confirm)


@tool("Create a checkpoint", CHANGES)
def checkpoint_create(ctx: Context, name: str, spec_folder: str | None = None) -> CheckpointInfo:
    """Save the content of every memory file (all, or one spec folder) and their validation scores."""
    return app(ctx).memories.checkpoint(name, spec_folder=spec_folder)


@tool("List checkpoints", READ_ONLY)
def checkpoint_list(ctx: Context) -> list[CheckpointInfo]:
    """Checkpoints, newest first, with scope, git branch and commit, file count and size."""
    return app(ctx).memories.checkpoints()


@tool("Restore a checkpoint", DESTROYS)
def checkpoint_restore(
    ctx: Context,
    name: str,
    clear_newer: Annotated[bool, Field(description="Also delete memory files created since")] = False,
) -> RestoreReport:
    """Rewrite the memory files to their content in a checkpoint and re-index them in one transaction
    (embeddings come back from the cache). Files created since are reported, or removed with clear_newer."""
    return app(ctx).memories.restore(name, clear_newer=clear_newer)


@tool("Delete a checkpoint", DESTROYS)
def checkpoint_delete(ctx: Context, name: str) -> dict[str, str]:
    """Delete one checkpoint."""
    app(ctx).memories.delete_checkpoint(name)
    return {"deleted": name}
