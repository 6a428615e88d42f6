"""The `tierwise` command line: one module per area (value, segments, actions, identity,
insights, admin), `main` to run it, `render` to draw results with Rich."""
