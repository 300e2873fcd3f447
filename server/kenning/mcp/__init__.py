"""The MCP door: ``kenning mcp`` serves the engine's search to coding agents."""
