"""specmem: long-term memory for AI coding assistants, kept as markdown files and indexed into SQLite."""
