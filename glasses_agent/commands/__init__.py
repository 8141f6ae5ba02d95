"""Small command modules for ``glasses-agent``; the parts keep their own CLIs."""
