"""Reports: tables and plots rebuilt from MLflow runs alone (no torch, no trial is rerun).

Modules, each importing only those above it (and, from ``suites``, only the torch-free ``suites.record``):

- ``frame``: the one frame of trials, from ``TrialRecord``s; mean and std over seeds
- ``store``: the finished trials' records, read back from MLflow
- ``reported``: published numbers from YAML files
- ``labels``: readable method labels ("LoRA (r=4)") from the logged options, and the user's overrides
- ``captions``: table captions from the records (protocol, tier, seeds, hardware)
- ``grid``: a result table apart from its format (cells, best and second marks, reported rows)
- ``render``: a grid as LaTeX or Markdown
- ``specs``: which trials make which table, with which columns
- ``tables``: the terminal ranking (text and CSV) and the Markdown retrieval overview
- ``plots``: the parameters-vs-score and training-step plots
- ``texcheck``: whether a table fits a 5.5 in, 10 pt text width (pdflatex's overfull boxes)
- ``build``: ``write_report``, the whole report
"""
