"""Reports: tables and plots rebuilt from MLflow runs alone (no torch, no trial is rerun)."""
