"""The MCP edge: the server (`build_server`), its read and write tools, resources and prompts, and the stdio and
HTTP transports. Everything here calls the library through `specmem.api.Memories`."""
