"""The MCP tools that change memory files and checkpoints. The file changes first; the index follows at once."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from specmem.indexer import checkpoints, db, files
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import (
    SpecmemError,
    WriteError,
)
from specmem.indexer.tiers import Tier
from specmem.indexer.write import delete_files, update_memory, write_memory
from specmem.server import memories

T = TypeVar("T")
CHANGES = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
DESTROYS = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)


class Written(BaseModel):
    id: int
    path: str
    changed: list[str] = Field(default_factory=list, description="Frontmatter keys that changed (updates)")


class Deleted(BaseModel):
    deleted: list[str]
    checkpoint: str = Field(description="Restore this checkpoint to undo the delete")


def register(
    server: MCPServer, config: Config, embedder: Callable[[], Embedder], after_write: Callable[[], None]
) -> None:
    """Add the writing tools to `server`. Each opens a short-lived writer connection; `after_write` runs after
    a successful change (the server uses it to embed new chunks in the background)."""

    def writing(fn: Callable[..., T]) -> T:
        conn = db.connect(config.db_path)
        try:
            result = fn(conn)
            after_write()
            return result
        except SpecmemError as exc:
            raise ToolError(str(exc)) from None
        finally:
            conn.close()

    @server.tool(annotations=CHANGES)
    def memory_write(
        title: Annotated[str, Field(max_length=200)],
        content: Annotated[
            str, Field(description="Markdown body; a '# title' heading is added if it has none")
        ],
        spec_folder: Annotated[
            str, Field(description="e.g. 003-auth; the file goes to <spec_folder>/memory/")
        ],
        tier: Tier = "normal",
        context_type: str | None = None,
        trigger_phrases: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Written:
        """Save a new memory as a markdown file with YAML frontmatter, named by date and title (never
        overwriting another), and index it at once. Returns its id and path."""

        def run(conn):  # type: ignore[no-untyped-def]
            mid, path = write_memory(
                conn,
                config,
                embedder(),
                title=title,
                content=content,
                spec_folder=spec_folder,
                tier=tier,
                context_type=context_type,
                trigger_phrases=trigger_phrases,
                tags=tags,
            )
            return Written(id=mid, path=str(path))

        return writing(run)

    @server.tool(annotations=CHANGES)
    def memory_update(
        id_or_path: str,
        title: Annotated[str | None, Field(max_length=200)] = None,
        tier: Tier | None = None,
        context_type: str | None = None,
        trigger_phrases: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Written:
        """Change a memory's frontmatter (title, tier, context type, trigger phrases, tags). Only the keys that
        change are rewritten; the body, comments, key order and other keys stay as they were."""

        def run(conn):  # type: ignore[no-untyped-def]
            row, path = memories.find_served(conn, config, id_or_path)
            changes = {
                "title": title,
                "importance_tier": tier,
                "context_type": context_type,
                "trigger_phrases": trigger_phrases,
                "tags": tags,
            }
            changed = update_memory(conn, config, embedder(), path, changes)
            return Written(id=row[0], path=str(path), changed=changed)

        return writing(run)

    @server.tool(annotations=DESTROYS)
    def memory_delete(
        id_or_path: str | None = None,
        spec_folder: str | None = None,
        confirm: Annotated[bool, Field(description="Required (true) to delete a whole spec folder")] = False,
    ) -> Deleted:
        """Delete one memory (id or path) or every memory of a spec folder (with confirm: true). A checkpoint is
        taken first; its name is returned so the delete can be undone with checkpoint_restore."""

        def run(conn):  # type: ignore[no-untyped-def]
            if (id_or_path is None) == (spec_folder is None):
                raise WriteError("give id_or_path or spec_folder (one of them)")
            if id_or_path is not None:
                row, path = memories.find_served(conn, config, id_or_path)
                rel = Path(row[2])
                scope = rel.parts[0] if len(rel.parts) > 1 else None
                targets, scopes = [path], (path,)
            else:
                if not confirm:
                    raise WriteError(f"deleting every memory of {spec_folder!r} needs confirm: true")
                scope = spec_folder
                folders = [f for _, f in checkpoints.scope_dirs(config, spec_folder)]
                walked = files.walk(config.roots, exclude=(config.db_path.parent,), scopes=tuple(folders))
                targets, scopes = sorted(walked.files), tuple(folders)
            name = f"auto-delete-{db.now_ms()}-{os.getpid()}"
            checkpoints.create(conn, config, name, spec_folder=scope, automatic=True)
            delete_files(conn, config, embedder(), targets, scopes)
            return Deleted(deleted=[str(p) for p in targets], checkpoint=name)

        return writing(run)

    @server.tool(annotations=CHANGES)
    def checkpoint_create(name: str, spec_folder: str | None = None) -> checkpoints.CheckpointInfo:
        """Save the content of every memory file (all, or one spec folder) and their validation scores."""
        return writing(lambda conn: checkpoints.create(conn, config, name, spec_folder=spec_folder))

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def checkpoint_list() -> list[checkpoints.CheckpointInfo]:
        """Checkpoints, newest first, with scope, git branch and commit, file count and size."""
        return writing(checkpoints.list_all)

    @server.tool(annotations=DESTROYS)
    def checkpoint_restore(
        name: str,
        clear_newer: Annotated[bool, Field(description="Also delete memory files created since")] = False,
    ) -> checkpoints.RestoreReport:
        """Rewrite the memory files to their content in a checkpoint and re-index them in one transaction
        (embeddings come back from the cache). Files created since are reported, or removed with clear_newer."""
        return writing(
            lambda conn: checkpoints.restore(conn, config, embedder(), name, clear_newer=clear_newer)
        )

    @server.tool(annotations=DESTROYS)
    def checkpoint_delete(name: str) -> dict[str, str]:
        """Delete one checkpoint."""

        def run(conn):  # type: ignore[no-untyped-def]
            checkpoints.delete(conn, name)
            return {"deleted": name}

        return writing(run)
