"""Side-by-side performance runs against other tools (scripts, never tests). See README.md."""
