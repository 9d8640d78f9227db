"""The operators' review tool: `python -m server.review` (docs/review-tool.md)."""
