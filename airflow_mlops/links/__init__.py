"""Operator extra links: each reads a URL the operator pushed to XCom, never the operator's runtime state."""
