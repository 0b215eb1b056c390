"""The two files that stages hand to each other, each with one reader/writer:

- `run_dir.RunDir`: the training run directory (train writes it; export reads the student and config).
- `manifest`: an export's `manifest.json` (export writes it; the runners, validation, the app flow and
  the Android app read it).

Only the base layer (config, recipes, atomic) is imported here, so every stage can depend on the contracts
without depending on another stage.
"""
