"""Task math shared by benchmarks: retrieval and VQA losses and evaluation, metrics, video frames."""
