"""The operators' review tool: `python -m review` (docs/review-tool.md)."""
